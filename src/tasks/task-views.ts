import { redactUrl } from '../common/redact';
import type { TaskRecord, TesExecutor, TesExecutorLog, TesInput, TesOutput, TesResources, TesTaskLog } from '../domain/tes-task';
import { TaskView } from '../domain/tes-task';

// Views exactly as the spec defines them. Every object is built field by field from the spec's names, so nothing
// else in a stored document can leak out (py-tes rejects unknown fields), and null or undefined values are left
// out (Cromwell and pydantic-tes reject nulls where the schema says string).

export type TaskViewBody = Record<string, unknown>;

export function renderTask(task: Pick<TaskRecord, 'id' | 'state'> & Partial<TaskRecord>, view: TaskView): TaskViewBody {
  if (view === TaskView.MINIMAL) return { id: task.id, state: task.state };
  const full = view === TaskView.FULL;
  return compact({
    id: task.id,
    state: task.state,
    name: task.name,
    description: task.description,
    inputs: task.inputs?.map((input) => renderInput(input, full)),
    outputs: task.outputs?.map(renderOutput),
    resources: task.resources && renderResources(task.resources),
    executors: task.executors?.map(renderExecutor),
    volumes: task.volumes,
    tags: task.tags && strings(task.tags),
    logs: task.logs?.map((log) => renderTaskLog(log, full)),
    creation_time: task.creation_time,
  });
}

function renderInput(input: TesInput, full: boolean): TaskViewBody {
  return compact({
    name: input.name,
    description: input.description,
    url: input.url && redactUrl(input.url),
    path: input.path,
    // pydantic-tes requires `type`; tasks stored before the default was filled in get FILE.
    type: input.type ?? 'FILE',
    content: full ? input.content : undefined,
    streamable: input.streamable,
  });
}

function renderOutput(output: TesOutput): TaskViewBody {
  return compact({
    name: output.name,
    description: output.description,
    url: output.url && redactUrl(output.url),
    path: output.path,
    path_prefix: output.path_prefix,
    type: output.type ?? 'FILE',
  });
}

function renderResources(resources: TesResources): TaskViewBody {
  return compact({
    // py-tes and Gson read cpu_cores as an integer.
    cpu_cores: typeof resources.cpu_cores === 'number' ? Math.ceil(resources.cpu_cores) : undefined,
    preemptible: resources.preemptible,
    ram_gb: resources.ram_gb,
    disk_gb: resources.disk_gb,
    zones: resources.zones,
    backend_parameters: resources.backend_parameters && strings(resources.backend_parameters),
    backend_parameters_strict: resources.backend_parameters_strict,
  });
}

function renderExecutor(executor: TesExecutor): TaskViewBody {
  return compact({
    image: executor.image,
    command: executor.command,
    workdir: executor.workdir,
    stdin: executor.stdin,
    stdout: executor.stdout,
    stderr: executor.stderr,
    env: executor.env && strings(executor.env),
    ignore_error: executor.ignore_error,
  });
}

function renderTaskLog(log: TesTaskLog, full: boolean): TaskViewBody {
  // `logs` and `outputs` are required by the schema, so they are always arrays; system_logs is FULL only.
  return compact({
    logs: (log.logs ?? []).map((executorLog) => renderExecutorLog(executorLog, full)),
    metadata: log.metadata && strings(log.metadata),
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

/** A map with string values only (Cromwell and Gson read maps as Map<String, String>). */
function strings(map: Record<string, unknown>): Record<string, string> {
  // fromEntries defines own properties, so even a "__proto__" key comes out as a plain entry.
  return Object.fromEntries(Object.entries(map).filter(([, value]) => value !== undefined && value !== null).map(([key, value]) => [key, String(value)]));
}

function compact<T extends Record<string, unknown>>(value: T): T {
  for (const key of Object.keys(value)) if (value[key] === undefined || value[key] === null) delete value[key];
  return value;
}
