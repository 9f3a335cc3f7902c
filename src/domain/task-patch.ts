import { canTransition, HELD_STATES, isTerminal } from './task-state-machine';
import {
  BackendRef,
  logIndexOf,
  StoredTask,
  TesExecutorLog,
  TesOutputFileLog,
  TesState,
  TesTaskLog,
} from './tes-task';
import type { TaskUpdate } from './task-update';

// Every change to a stored task after its creation is a patch: guards, an optional state change and a list of
// declarative operations on the current attempt's log. A store applies a patch atomically or not at all; the
// shape maps onto one MongoDB findOneAndUpdate (the guards as the filter, set_* as $set of dotted paths, add_* as
// $addToSet), and SQLite runs applyTaskPatch inside one transaction.
//
// Idempotence: a run's updates carry (attempt, seq) and apply only above the highest seq applied in that attempt,
// so a redelivered or older update changes nothing; appends have set semantics (an identical system log line or
// output entry is not added twice), so even a patch without seq can be replayed.

export type PatchOp =
  /** Sets the given fields of executor log `index` of the attempt (other fields stay). */
  | { op: 'set_executor_log'; index: number; fields: TesExecutorLog }
  | { op: 'add_system_log'; line: string }
  | { op: 'add_outputs'; outputs: TesOutputFileLog[] }
  | { op: 'merge_metadata'; values: Record<string, string> }
  | { op: 'set_times'; start_time?: string; end_time?: string }
  /** Sets the given keys of the backend reference (the others stay: reports stored meanwhile survive a later set). */
  | { op: 'set_backend_ref'; ref: BackendRef };

export interface TaskPatch {
  /** Applies only while the task is in one of these states. */
  from: readonly TesState[];
  /** The state to move to; the state machine must allow it from the current state. */
  to?: TesState;
  /** Applies only while this is the task's current attempt; the ops write this attempt's log. */
  attempt: number;
  /** A run's update number within the attempt: applies only above the highest applied, which it then becomes. */
  seq?: number;
  /** Fencing: applies only while the task's lease carries this token. */
  lease_token?: string;
  /** After the ops, ends this attempt and opens the next with this log: the task starts over (seq from 0). */
  next_attempt?: { log: TesTaskLog };
  ops: readonly PatchOp[];
}

export type PatchRefusal =
  /** No task with that id. */
  | 'missing'
  /** The task is in a state the patch does not apply in. */
  | 'state'
  /** The task has moved on to another attempt. */
  | 'attempt'
  /** The update was applied already, or a newer one was. */
  | 'stale'
  /** Another lease token holds the task: the writer no longer holds it. */
  | 'fenced';

/**
 * What a patch changes: the state, the logs and the control fields; never the request (executors, inputs...).
 * A store applies patches to this much of a task, so an update's work does not grow with the request.
 */
export type TaskProgress = Pick<StoredTask, 'state' | 'logs' | 'control'>;

/**
 * A patch's outcome. Applied, it names the task's id, state and control fields after it, not the whole task: an
 * update's answer stays small however many executors, inputs or log lines the task has.
 */
export type PatchResult = { applied: true; task: Pick<StoredTask, 'id' | 'state' | 'control'> } | { applied: false; reason: PatchRefusal };

/** Why `patch` cannot apply to `task` now, or undefined when it can. */
export function patchRefusal(task: Pick<StoredTask, 'state' | 'control'>, patch: TaskPatch): PatchRefusal | undefined {
  if (!patch.from.includes(task.state) || (patch.to !== undefined && !canTransition(task.state, patch.to))) return 'state';
  if (task.control.attempt !== patch.attempt) return 'attempt';
  if (patch.lease_token !== undefined && task.control.lease?.token !== patch.lease_token) return 'fenced';
  if (patch.seq !== undefined && patch.seq <= task.control.update_seq) return 'stale';
  return undefined;
}

/** Applies a patch to a copy of the task (or of its progress part); the task given is left as it is. */
export function applyTaskPatch<T extends TaskProgress>(task: T, patch: TaskPatch): { applied: true; task: T } | { applied: false; reason: PatchRefusal } {
  const refusal = patchRefusal(task, patch);
  if (refusal) return { applied: false, reason: refusal };
  const next = structuredClone(task);
  const log = attemptLog(next, patch.attempt);
  for (const op of patch.ops) applyOp(next, log, op);
  if (patch.seq !== undefined) next.control.update_seq = patch.seq;
  if (patch.to !== undefined) next.state = patch.to;
  if (patch.next_attempt) {
    next.control.attempt = patch.attempt + 1;
    next.control.update_seq = 0;
    delete next.control.backend_ref;
    next.logs[logIndexOf(next.control.attempt)] = structuredClone(patch.next_attempt.log);
  }
  // A finished task is held by no one, nor is one that waits in the queue again.
  if (isTerminal(next.state) || next.state === TesState.QUEUED) delete next.control.lease;
  return { applied: true, task: next };
}

function applyOp(task: TaskProgress, log: TesTaskLog, op: PatchOp): void {
  switch (op.op) {
    case 'set_executor_log': {
      while (log.logs.length < op.index) log.logs.push({});
      log.logs[op.index] = { ...(log.logs[op.index] ?? {}), ...op.fields };
      return;
    }
    case 'add_system_log':
      if (!log.system_logs.includes(op.line)) log.system_logs.push(op.line);
      return;
    case 'add_outputs':
      for (const output of op.outputs) {
        const entry = { url: output.url, path: output.path, size_bytes: output.size_bytes };
        if (!log.outputs.some((o) => o.url === entry.url && o.path === entry.path && o.size_bytes === entry.size_bytes)) log.outputs.push(entry);
      }
      return;
    case 'merge_metadata':
      log.metadata = { ...log.metadata, ...op.values };
      return;
    case 'set_times':
      if (op.start_time !== undefined) log.start_time = op.start_time;
      if (op.end_time !== undefined) log.end_time = op.end_time;
      return;
    case 'set_backend_ref':
      task.control.backend_ref = { ...(task.control.backend_ref ?? {}), ...op.ref } as BackendRef;
      return;
  }
}

/** The log of `attempt`, created (with any entries before it) when the task has none yet. */
function attemptLog(task: TaskProgress, attempt: number): TesTaskLog {
  const index = logIndexOf(attempt);
  while (task.logs.length <= index) task.logs.push(emptyLog());
  const log = task.logs[index];
  log.logs ??= [];
  log.outputs ??= [];
  log.system_logs ??= [];
  return log;
}

export function emptyLog(): TesTaskLog {
  return { logs: [], outputs: [], system_logs: [] };
}

/** Where a run's update belongs: its attempt, its number in that attempt and the lease it runs under. */
export interface RunPosition {
  attempt: number;
  seq: number;
  leaseToken: string;
}

/**
 * The patch that records a run's update. Reports are written while the task is held (also while CANCELING: what
 * the run reported while it was being stopped counts). A run's end moves the task only from INITIALIZING or
 * RUNNING: once a cancel is recorded, the cancel decides the end.
 */
export function patchForUpdate(update: TaskUpdate, run: RunPosition, now: string): TaskPatch {
  const guards = { attempt: run.attempt, seq: run.seq, lease_token: run.leaseToken };
  const reporting = (ops: PatchOp[]): TaskPatch => ({ ...guards, from: HELD_STATES, ops });
  switch (update.kind) {
    case 'running':
      return { ...guards, from: [TesState.INITIALIZING], to: TesState.RUNNING, ops: [] };
    case 'executor-started':
      return reporting([{ op: 'set_executor_log', index: update.index, fields: { start_time: update.startTime } }]);
    case 'executor-output':
      return reporting([{ op: 'set_executor_log', index: update.index, fields: { stdout: update.stdout, stderr: update.stderr } }]);
    case 'executor-finished':
      return reporting([
        {
          op: 'set_executor_log',
          index: update.index,
          fields: { end_time: update.endTime, exit_code: update.exitCode, stdout: update.stdout, stderr: update.stderr },
        },
      ]);
    case 'output-uploaded':
      return reporting([{ op: 'add_outputs', outputs: update.outputs }]);
    case 'metadata':
      return reporting([{ op: 'merge_metadata', values: update.values }]);
    case 'system-log':
      return reporting([{ op: 'add_system_log', line: update.message }]);
    case 'backend-ref':
      return reporting([{ op: 'set_backend_ref', ref: update.ref }]);
    case 'finished': {
      const to = TesState[update.state];
      const reason = update.reason ?? (to === TesState.SYSTEM_ERROR ? 'the compute backend reported a system error without a reason' : undefined);
      const ops: PatchOp[] = [{ op: 'set_times', end_time: now }];
      if (reason) ops.push({ op: 'add_system_log', line: reason });
      return { ...guards, from: [TesState.INITIALIZING, TesState.RUNNING], to, ops };
    }
  }
}

/**
 * The patch for a report about a task that may be held by another replica (a status a runner pushed through a
 * broker, a file it posted to a staging URL): guarded by the attempt and the task's state only. Such reports have no
 * order of their own; what makes them safe to apply twice or out of order is that every op is idempotent and a
 * state change applies only forwards (the state machine refuses RUNNING after an end, and any end after an end).
 */
export function patchForReport(update: TaskUpdate, attempt: number, now: string): TaskPatch {
  const { seq: _seq, lease_token: _token, ...patch } = patchForUpdate(update, { attempt, seq: 0, leaseToken: '' }, now);
  return patch;
}
