import { redactUrl } from '../common/redact';
import type { TaskRecord, TesExecutorLog, TesTaskLog } from './tes-task';
import { TaskView } from './tes-task';

// Views exactly as the spec defines them, and nothing outside the spec's fields (py-tes rejects unknown ones).

export type TaskViewBody = Record<string, unknown>;

export function renderTask(task: Pick<TaskRecord, 'id' | 'state'> & Partial<TaskRecord>, view: TaskView): TaskViewBody {
  if (view === TaskView.MINIMAL) return { id: task.id, state: task.state };
  const full = view === TaskView.FULL;
  const body: TaskViewBody = {
    id: task.id,
    state: task.state,
    name: task.name,
    description: task.description,
    inputs: task.inputs?.map((input) =>
      compact({ ...input, url: input.url && redactUrl(input.url), content: full ? input.content : undefined, type: input.type ?? 'FILE' }),
    ),
    outputs: task.outputs?.map((output) => compact({ ...output, url: redactUrl(output.url), type: output.type ?? 'FILE' })),
    resources: task.resources && compact({ ...task.resources, cpu_cores: task.resources.cpu_cores === undefined ? undefined : Math.ceil(task.resources.cpu_cores) }),
    executors: task.executors,
    volumes: task.volumes,
    tags: task.tags,
    logs: task.logs?.map((log) => renderTaskLog(log, full)),
    creation_time: task.creation_time,
  };
  return compact(body);
}

function renderTaskLog(log: TesTaskLog, full: boolean): TaskViewBody {
  return compact({
    logs: (log.logs ?? []).map((executorLog) => renderExecutorLog(executorLog, full)),
    metadata: log.metadata,
    start_time: log.start_time,
    end_time: log.end_time,
    outputs: (log.outputs ?? []).map((o) => ({ url: redactUrl(o.url), path: o.path, size_bytes: String(o.size_bytes) })),
    system_logs: full ? (log.system_logs ?? []) : undefined,
  });
}

function renderExecutorLog(log: TesExecutorLog | null | undefined, full: boolean): TaskViewBody {
  return compact({
    start_time: log?.start_time,
    end_time: log?.end_time,
    stdout: full ? (log?.stdout ?? '') : undefined,
    stderr: full ? (log?.stderr ?? '') : undefined,
    // exit_code is required by the schema; while the executor runs it has none yet, so 0 stands in (as in Funnel)
    // and the missing end_time tells that it is still running.
    exit_code: log?.exit_code ?? 0,
  });
}

function compact<T extends Record<string, unknown>>(value: T): T {
  for (const key of Object.keys(value)) if (value[key] === undefined || value[key] === null) delete value[key];
  return value;
}
