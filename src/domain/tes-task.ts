// The TES v1.1 task model as tesp stores it. Field names are the spec's (snake_case) so the stored document,
// the views and the wire format never need a mapping layer. The domain folder imports nothing else of tesp.

export enum TesState {
  UNKNOWN = 'UNKNOWN',
  QUEUED = 'QUEUED',
  INITIALIZING = 'INITIALIZING',
  RUNNING = 'RUNNING',
  PAUSED = 'PAUSED',
  COMPLETE = 'COMPLETE',
  EXECUTOR_ERROR = 'EXECUTOR_ERROR',
  SYSTEM_ERROR = 'SYSTEM_ERROR',
  CANCELED = 'CANCELED',
  PREEMPTED = 'PREEMPTED',
  CANCELING = 'CANCELING',
}

export const ALL_STATES: readonly TesState[] = Object.values(TesState);

export type FileType = 'FILE' | 'DIRECTORY';

export interface TesInput {
  name?: string;
  description?: string;
  url?: string;
  path: string;
  type: FileType;
  content?: string;
  streamable?: boolean;
}

export interface TesOutput {
  name?: string;
  description?: string;
  url: string;
  path: string;
  path_prefix?: string;
  type: FileType;
}

export interface TesResources {
  cpu_cores?: number;
  preemptible?: boolean;
  ram_gb?: number;
  disk_gb?: number;
  zones?: string[];
  backend_parameters?: Record<string, string>;
  backend_parameters_strict?: boolean;
}

export interface TesExecutor {
  image: string;
  command: string[];
  workdir?: string;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  env?: Record<string, string>;
  ignore_error?: boolean;
}

export interface TesExecutorLog {
  start_time?: string;
  end_time?: string;
  stdout?: string;
  stderr?: string;
  /** Absent while the executor runs; views emit 0 until it ends (see task-views.ts). */
  exit_code?: number;
}

export interface TesOutputFileLog {
  url: string;
  path: string;
  size_bytes: string;
}

export interface TesTaskLog {
  logs: TesExecutorLog[];
  metadata?: Record<string, string>;
  start_time?: string;
  end_time?: string;
  outputs: TesOutputFileLog[];
  system_logs: string[];
}

/** What a client may submit, after validation and normalisation. */
export interface TesTaskRequest {
  name?: string;
  description?: string;
  inputs?: TesInput[];
  outputs?: TesOutput[];
  resources?: TesResources;
  executors: TesExecutor[];
  volumes?: string[];
  tags?: Record<string, string>;
}

/** A task as TES shows it: the request plus what the server owns. */
export interface TaskRecord extends TesTaskRequest {
  id: string;
  state: TesState;
  creation_time: string;
  /** One entry per attempt, as the spec intends; the last is the current attempt's. */
  logs: TesTaskLog[];
}

/** Which replica runs a task, until when, and the token that fences its writes. */
export interface TaskLease {
  holder: string;
  /** Epoch milliseconds; after this another replica may take the task over. */
  until: number;
  /** New at every claim and take-over: a write carrying an older token is refused. */
  token: string;
}

/** How a compute backend finds a task's work again (containers, a runner's job id): small, JSON, server-only. */
export type BackendRef = Record<string, string | number | boolean>;

/** What the server keeps beside a task and never shows in a view. */
export interface TaskControl {
  /**
   * Who created the task (Principal.name; '' for the anonymous caller and for tasks stored before owners were
   * recorded). Never changes and never shows in a TES view; the stores always set it.
   */
  owner?: string;
  /** Attempts started: 0 while QUEUED; attempt n writes logs[n - 1]. */
  attempt: number;
  /** The highest update number applied in the current attempt: a redelivered or older update changes nothing. */
  update_seq: number;
  /** Set while a replica holds the task (INITIALIZING, RUNNING, PAUSED, CANCELING). */
  lease?: TaskLease;
  backend_ref?: BackendRef;
}

/** A task as the store returns it. */
export interface StoredTask extends TaskRecord {
  control: TaskControl;
}

/** The size of a request's inputs' contents, UTF-8 bytes: what BASIC views leave out. */
export function contentBytes(request: Pick<TesTaskRequest, 'inputs'>): number {
  return (request.inputs ?? []).reduce((sum, input) => sum + (input.content ? Buffer.byteLength(input.content) : 0), 0);
}

/** The index in `logs` that attempt `attempt` writes (attempt 0, before any start, writes the first entry). */
export function logIndexOf(attempt: number): number {
  return Math.max(attempt, 1) - 1;
}

export enum TaskView {
  MINIMAL = 'MINIMAL',
  BASIC = 'BASIC',
  FULL = 'FULL',
}
