import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { TaskScope } from '../../domain/principal';
import type { PatchOp, TaskPatch } from '../../domain/task-patch';
import { HELD_STATES, isTerminal, statesLeadingTo } from '../../domain/task-state-machine';
import { BackendRef, contentBytes, logIndexOf, StoredTask, TaskRecord, TesExecutorLog, TesState, TesTaskLog } from '../../domain/tes-task';
import type { TagFilter, TaskListQuery } from '../task-repository';

// How tasks, list queries, claims and patches map onto MongoDB documents, filters and updates: pure functions, unit
// tested without a server. A document:
//
//   { _id: ObjectId (insertion order: paging and claims), task_id, state, owner, name, tag_keys: [k], tag_pairs: ['["k","v"]'],
//     record: '<the TaskRecord without logs, as JSON>', logs: [StoredLog], control: { attempt, update_seq, lease?, backend_ref? } }
//
// The record is immutable after insert and kept as JSON text, so any tag key or field round-trips exactly. Logs are
// written by patches, one dotted path per field: executor logs as an object keyed by index and metadata with
// escaped keys, so no key a task or a run writes ('sha256:/out/x.txt') is read as a path.

export interface StoredLog {
  start_time?: string;
  end_time?: string;
  system_logs?: string[];
  outputs?: Array<{ url: string; path: string; size_bytes: string }>;
  metadata?: Record<string, string>;
  executors?: Record<string, TesExecutorLog>;
}

export interface TaskDocument {
  task_id: string;
  state: TesState;
  /** Principal.name of the creator; absent on tasks stored before owners were recorded (read as ''). */
  owner?: string;
  name: string | null;
  tag_keys: string[];
  tag_pairs: string[];
  record: string;
  /** The record's size (UTF-8 bytes), for cutting FULL pages before any record is read; absent on older documents. */
  record_bytes?: number;
  /** Of that, the inputs' contents (what a BASIC page leaves out). */
  content_bytes?: number;
  logs: StoredLog[];
  control: { attempt: number; update_seq: number; lease?: { holder: string; until: number; token: string } | null; backend_ref?: BackendRef | null };
}

export type Filter = Record<string, unknown>;
export interface Update {
  $set?: Record<string, unknown>;
  $unset?: Record<string, ''>;
  $addToSet?: Record<string, { $each: unknown[] }>;
}

/** A metadata key as a field name: '.', '$' and '%' escaped, so it is never a path or an operator. */
export function encodeKey(key: string): string {
  return key === '' ? '%' : key.replace(/%/g, '%25').replace(/\./g, '%2E').replace(/\$/g, '%24');
}

export function decodeKey(field: string): string {
  return field === '%' ? '' : field.replace(/%2E/g, '.').replace(/%24/g, '$').replace(/%25/g, '%');
}

export function tagPair(key: string, value: string): string {
  return JSON.stringify([key, value]);
}

function encodeLog(log: TesTaskLog): StoredLog {
  const stored: StoredLog = {};
  if (log.start_time !== undefined) stored.start_time = log.start_time;
  if (log.end_time !== undefined) stored.end_time = log.end_time;
  stored.system_logs = [...(log.system_logs ?? [])];
  stored.outputs = (log.outputs ?? []).map((o) => ({ url: o.url, path: o.path, size_bytes: o.size_bytes }));
  if (log.metadata) stored.metadata = Object.fromEntries(Object.entries(log.metadata).map(([k, v]) => [encodeKey(k), v]));
  stored.executors = Object.fromEntries((log.logs ?? []).map((executor, index) => [String(index), { ...executor }]));
  return stored;
}

function decodeLog(stored: StoredLog | null): TesTaskLog {
  const log: TesTaskLog = { logs: [], outputs: [], system_logs: [] };
  if (!stored) return log;
  const executors = stored.executors ?? {};
  const count = Math.max(0, ...Object.keys(executors).map((k) => Number(k) + 1));
  log.logs = Array.from({ length: count }, (_, i) => ({ ...(executors[String(i)] ?? {}) }));
  log.outputs = (stored.outputs ?? []).map((o) => ({ url: o.url, path: o.path, size_bytes: o.size_bytes }));
  log.system_logs = [...(stored.system_logs ?? [])];
  if (stored.metadata) log.metadata = Object.fromEntries(Object.entries(stored.metadata).map(([k, v]) => [decodeKey(k), v]));
  if (stored.start_time !== undefined) log.start_time = stored.start_time;
  if (stored.end_time !== undefined) log.end_time = stored.end_time;
  return log;
}

/** The document a new task is stored as: attempt 0, no lease. */
export function toDocument(task: TaskRecord, owner: string): TaskDocument {
  const { logs, ...rest } = task;
  const tags = Object.entries(task.tags ?? {});
  const record = JSON.stringify(rest);
  return {
    task_id: task.id,
    state: task.state,
    owner,
    name: task.name ?? null,
    tag_keys: tags.map(([k]) => k),
    tag_pairs: tags.map(([k, v]) => tagPair(k, v)),
    record,
    record_bytes: Buffer.byteLength(record),
    content_bytes: contentBytes(task),
    logs: (logs ?? []).map(encodeLog),
    control: { attempt: 0, update_seq: 0 },
  };
}

export function toRecord(doc: Pick<TaskDocument, 'record' | 'state' | 'logs'>): TaskRecord {
  const record = JSON.parse(doc.record) as TaskRecord;
  return { ...record, state: doc.state, logs: (doc.logs ?? []).map(decodeLog) };
}

export function toControl(doc: Pick<TaskDocument, 'owner' | 'control'>): StoredTask['control'] {
  const control: StoredTask['control'] = { owner: doc.owner ?? '', attempt: doc.control.attempt, update_seq: doc.control.update_seq };
  if (doc.control.lease) control.lease = { ...doc.control.lease };
  if (doc.control.backend_ref) control.backend_ref = { ...doc.control.backend_ref };
  return control;
}

export function toStoredTask(doc: TaskDocument): StoredTask {
  return { ...toRecord(doc), control: toControl(doc) };
}

/** What reads that need no request project: a patch's answer and refusal check, the scheduler's bookkeeping. */
export const PROGRESS_PROJECTION = { _id: 0, task_id: 1, state: 1, owner: 1, control: 1 } as const;

/** A task's logs as stored, decoded. */
export function toLogs(doc: Pick<TaskDocument, 'logs'>): TesTaskLog[] {
  return (doc.logs ?? []).map(decodeLog);
}

/** A regular expression that matches exactly the strings starting with `prefix` (every character literal). */
export function prefixPattern(prefix: string): string {
  return '^' + prefix.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/** The part of a filter that keeps a query inside a caller's scope (the {owner, _id} index serves it). */
export function scopeFilter(scope: TaskScope): Filter {
  return scope.all ? {} : { owner: scope.owner };
}

/**
 * The filter of a list page: the caller's scope, every query filter, and rows older than the page token's _id (a
 * token only says where to go on, the scope what may be seen).
 */
export function listFilter(scope: TaskScope, query: Pick<TaskListQuery, 'namePrefix' | 'state' | 'tags'>, afterId?: unknown): Filter {
  const filter: Filter = scopeFilter(scope);
  if (afterId !== undefined) filter._id = { $lt: afterId };
  if (query.state) filter.state = query.state;
  if (query.namePrefix) filter.name = { $regex: prefixPattern(query.namePrefix) };
  const keys: string[] = [];
  const pairs: string[] = [];
  for (const tag of query.tags as TagFilter[]) {
    if (tag.value) pairs.push(tagPair(tag.key, tag.value));
    else keys.push(tag.key);
  }
  if (keys.length) filter.tag_keys = { $all: [...new Set(keys)] };
  if (pairs.length) filter.tag_pairs = { $all: [...new Set(pairs)] };
  return filter;
}

/** The filter and update of a claim: the oldest QUEUED task not skipped becomes attempt 1 of `holder`. */
export function claimUpdate(holder: string, until: number, token: string, now: string, skip: readonly string[] = []): { filter: Filter; update: Update } {
  return {
    filter: { state: TesState.QUEUED, ...(skip.length ? { task_id: { $nin: [...skip] } } : {}) },
    update: {
      $set: {
        state: TesState.INITIALIZING,
        'control.attempt': 1,
        'control.update_seq': 0,
        'control.lease': { holder, until, token },
        // The first log exists from creation (insert stores one, empty or with creation warnings).
        'logs.0.start_time': now,
      },
    },
  };
}

/** Held tasks whose lease ended (or that have none). */
export function expiredFilter(now: number): Filter {
  return { state: { $in: [...HELD_STATES] }, $or: [{ 'control.lease': null }, { 'control.lease.until': { $lt: now } }] };
}

/** A holder's live leases (a released lease has until 0 and belongs to no one). */
export function heldFilter(holder: string): Filter {
  return { 'control.lease.holder': holder, 'control.lease.until': { $gt: 0 } };
}

/**
 * One patch as one conditional update: the guards are the filter (states the patch applies in that can also reach
 * its target, attempt, lease token, a sequence below the patch's), the ops are $set of dotted paths and $addToSet
 * (set semantics, as the patch vocabulary asks). Undefined when the patch can apply in no state at all.
 */
export function patchUpdate(id: string, patch: TaskPatch): { filter: Filter; update: Update } | undefined {
  const reachable = patch.to === undefined ? patch.from : patch.from.filter((s) => statesLeadingTo(patch.to!).includes(s));
  if (reachable.length === 0) return undefined;
  const filter: Filter = { task_id: id, state: { $in: [...reachable] }, 'control.attempt': patch.attempt };
  if (patch.lease_token !== undefined) filter['control.lease.token'] = patch.lease_token;
  if (patch.seq !== undefined) filter['control.update_seq'] = { $lt: patch.seq };
  const log = `logs.${logIndexOf(patch.attempt)}`;
  const set: Record<string, unknown> = {};
  const unset: Record<string, ''> = {};
  const add: Record<string, unknown[]> = {};
  const addTo = (path: string, values: unknown[]) => (add[path] = [...(add[path] ?? []), ...values]);
  for (const op of patch.ops) applyOp(op, log, set, addTo);
  if (patch.seq !== undefined) set['control.update_seq'] = patch.seq;
  if (patch.to !== undefined) {
    set.state = patch.to;
    if (isTerminal(patch.to) || patch.to === TesState.QUEUED) unset['control.lease'] = '';
  }
  if (patch.next_attempt) {
    set['control.attempt'] = patch.attempt + 1;
    set['control.update_seq'] = 0;
    unset['control.backend_ref'] = '';
    // logs.<n> for the new attempt: a path beside logs.<n-1>.*, where a $push of logs would conflict.
    set[`logs.${logIndexOf(patch.attempt + 1)}`] = encodeLog(patch.next_attempt.log);
  }
  const update: Update = {};
  if (Object.keys(set).length) update.$set = set;
  if (Object.keys(unset).length) update.$unset = unset;
  if (Object.keys(add).length) update.$addToSet = Object.fromEntries(Object.entries(add).map(([k, v]) => [k, { $each: v }]));
  // An update must change something; a patch of guards only still has to match, and sets the state it has.
  if (!update.$set && !update.$unset && !update.$addToSet) update.$set = { 'control.attempt': patch.attempt };
  return { filter, update };
}

function applyOp(op: PatchOp, log: string, set: Record<string, unknown>, addTo: (path: string, values: unknown[]) => void): void {
  switch (op.op) {
    case 'set_executor_log':
      for (const [field, value] of Object.entries(op.fields)) if (value !== undefined) set[`${log}.executors.${op.index}.${field}`] = value;
      return;
    case 'add_system_log':
      addTo(`${log}.system_logs`, [op.line]);
      return;
    case 'add_outputs':
      addTo(`${log}.outputs`, op.outputs.map((o) => ({ url: o.url, path: o.path, size_bytes: o.size_bytes })));
      return;
    case 'merge_metadata':
      for (const [key, value] of Object.entries(op.values)) set[`${log}.metadata.${encodeKey(key)}`] = value;
      return;
    case 'set_times':
      if (op.start_time !== undefined) set[`${log}.start_time`] = op.start_time;
      if (op.end_time !== undefined) set[`${log}.end_time`] = op.end_time;
      return;
    case 'set_backend_ref':
      // Key by key, as the domain merges: reports another replica stored meanwhile stay.
      for (const [key, value] of Object.entries(op.ref)) {
        if (!/^[A-Za-z0-9_]+$/.test(key)) throw new Error(`backend reference key ${JSON.stringify(key)} is not a plain word`);
        set[`control.backend_ref.${key}`] = value;
      }
      return;
  }
}

// Page tokens name the last row's _id (its hex), base64url-wrapped; only tokens in exactly the issued form pass.

export function encodePageToken(lastIdHex: string): string {
  return Buffer.from(JSON.stringify({ after: lastIdHex })).toString('base64url');
}

export function decodePageToken(token: string): string {
  let after: unknown;
  try {
    after = (JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { after?: unknown } | null)?.after;
  } catch {
    after = undefined;
  }
  if (typeof after !== 'string' || !/^[0-9a-f]{24}$/.test(after) || encodePageToken(after) !== token) {
    throw new DomainError(ErrorCode.InvalidArgument, 'page_token: not a token this server issued');
  }
  return after;
}
