import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { COMPUTE_BACKEND, ComputeBackend } from '../compute/compute-backend';
import { TASK_REPOSITORY, TaskRepository } from '../persistence/task-repository';
import { TaskScheduler } from '../scheduler/task-scheduler';
import { StorageRegistry } from '../storage/storage-registry';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { parseListQuery, parseView } from './list-query';
import { parseTaskRequest } from './task-request.parser';
import { renderTask, TaskViewBody } from './task-views';
import { TaskRecord, TesState, TesTaskRequest } from '../domain/tes-task';
import { Principal, scopeOf } from '../domain/principal';

export interface ListTasksBody {
  tasks: TaskViewBody[];
  next_page_token?: string;
}

@Injectable()
export class TasksService {
  constructor(
    @Inject(TASK_REPOSITORY) private readonly repo: TaskRepository,
    @Inject(COMPUTE_BACKEND) private readonly backend: ComputeBackend,
    private readonly storage: StorageRegistry,
    private readonly scheduler: TaskScheduler,
    @Inject(SETTINGS) private readonly settings: Settings,
  ) {}

  /** Validates and stores a task owned by the caller; it is on disk before its id is returned. */
  async create(body: unknown, caller: Principal): Promise<{ id: string }> {
    const request = parseTaskRequest(body, this.settings.limits);
    await this.checkUrls(request);
    const warnings = this.applyBackendParameters(request);
    // The parser built `request` for this call alone: it becomes the record in place, without a copy.
    const task = request as TaskRecord;
    task.id = randomUUID();
    task.state = TesState.QUEUED;
    task.creation_time = new Date().toISOString();
    task.logs = warnings.length > 0 ? [{ logs: [], outputs: [], system_logs: warnings }] : [];
    await this.repo.insert(task, caller.name);
    this.scheduler.taskCreated();
    return { id: task.id };
  }

  /** A task of the caller's; another's answers as one that does not exist (404), so ids do not leak. */
  async get(id: string, query: Record<string, unknown>, caller: Principal): Promise<TaskViewBody> {
    const view = parseView(query);
    const task = await this.repo.getForView(id, view, scopeOf(caller));
    if (!task) throw new DomainError(ErrorCode.NotFound, `task ${id} not found`);
    return renderTask(task, view);
  }

  async list(rawQuery: Record<string, unknown>, caller: Principal): Promise<ListTasksBody> {
    const { view, query } = parseListQuery(rawQuery, this.settings.limits);
    const page = await this.repo.list(scopeOf(caller), query);
    const body: ListTasksBody = { tasks: page.tasks.map((task) => renderTask(task, view)) };
    if (page.nextPageToken) body.next_page_token = page.nextPageToken;
    return body;
  }

  /** Records the cancel of a task of the caller's and answers at once; the replica holding the task stops its work. */
  async cancel(id: string, caller: Principal): Promise<Record<string, never>> {
    await this.scheduler.requestCancel(id, scopeOf(caller));
    return {};
  }

  /** Every URL must name an enabled scheme (and, for files, an allowed directory) before the task is stored. */
  private async checkUrls(request: TesTaskRequest): Promise<void> {
    const check = async (field: string, url: string) => {
      const problem = await this.storage.validateUrl(url);
      if (problem) throw new DomainError(ErrorCode.InvalidArgument, `${field}: ${problem}`);
    };
    const { inputs = [], outputs = [] } = request;
    for (let i = 0; i < inputs.length; i++) if (!inputs[i].content && inputs[i].url !== undefined) await check(`inputs[${i}].url`, inputs[i].url!);
    for (let i = 0; i < outputs.length; i++) await check(`outputs[${i}].url`, outputs[i].url);
  }

  /**
   * Keeps the backend parameters the compute backend declares (keys compared case-insensitively, stored in lower
   * case, values checked by the declaration); unsupported keys are refused when strict, otherwise dropped with a
   * warning for system_logs.
   */
  private applyBackendParameters(request: TesTaskRequest): string[] {
    const params = request.resources?.backend_parameters;
    if (!params || !request.resources) return [];
    const declared = new Map(this.backend.backendParameters.map((parameter) => [parameter.key, parameter]));
    const kept: Record<string, string> = {};
    const dropped: string[] = [];
    for (const [key, value] of Object.entries(params)) {
      const parameter = declared.get(key.toLowerCase());
      if (!parameter) {
        dropped.push(key);
        continue;
      }
      const problem = parameter.problem(value);
      if (problem) throw new DomainError(ErrorCode.InvalidArgument, `resources.backend_parameters.${parameter.key}: ${problem}`);
      kept[parameter.key] = value;
    }
    const list = [...declared.keys()].join(', ') || 'none';
    if (dropped.length > 0 && request.resources.backend_parameters_strict) {
      throw new DomainError(ErrorCode.InvalidArgument, `resources.backend_parameters: unsupported key(s) ${dropped.join(', ')} with backend_parameters_strict (supported: ${list})`);
    }
    request.resources.backend_parameters = kept;
    return dropped.length > 0 ? [`backend_parameters: unsupported key(s) dropped: ${dropped.join(', ')} (supported: ${list})`] : [];
  }
}
