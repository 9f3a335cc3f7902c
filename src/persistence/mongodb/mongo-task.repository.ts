import { randomUUID } from 'node:crypto';
import mongoose, { Connection } from 'mongoose';
import type { Logger } from '../../common/logger';
import { redactUrl } from '../../common/redact';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { TaskScope } from '../../domain/principal';
import { PatchResult, patchRefusal, TaskPatch } from '../../domain/task-patch';
import { HELD_STATES } from '../../domain/task-state-machine';
import { StoredTask, TaskRecord, TaskView, TesState } from '../../domain/tes-task';
import {
  ClaimOptions,
  DEFAULT_FULL_PAGE_BYTES,
  HeldTask,
  TaskListPage,
  TaskListQuery,
  TaskProgressView,
  TaskRepository,
  ViewedTask,
} from '../task-repository';
import {
  claimUpdate,
  decodePageToken,
  encodePageToken,
  expiredFilter,
  Filter,
  heldFilter,
  listFilter,
  patchUpdate,
  PROGRESS_PROJECTION,
  scopeFilter,
  toControl,
  toLogs,
  TaskDocument,
  toDocument,
  toRecord,
  toStoredTask,
  Update,
} from './mongo-task-mapping';

type Doc = TaskDocument & { _id: mongoose.Types.ObjectId };

export interface MongoStoreSettings {
  url: string;
  /** How long an operation waits for a server before it fails (the API answers 503 meanwhile). */
  serverSelectionTimeoutMs: number;
  /** The byte budget of a full list page (store.full_page_bytes). */
  fullPageBytes?: number;
}

/** Indexes for every list filter with the newest-first order, claims, leases and the unique task id. */
const INDEXES: Array<{ key: Record<string, 1 | -1>; unique?: boolean }> = [
  { key: { task_id: 1 }, unique: true },
  { key: { state: 1, _id: 1 } },
  { key: { owner: 1, _id: -1 } },
  { key: { name: 1, _id: -1 } },
  { key: { tag_keys: 1, _id: -1 } },
  { key: { tag_pairs: 1, _id: -1 } },
  { key: { 'control.lease.holder': 1 } },
  { key: { state: 1, 'control.lease.until': 1 } },
];

/** Store writes that meet a changed document (a refusal read that finds the patch applicable after all) try again. */
const PATCH_TRIES = 5;

/**
 * The production task store: MongoDB through mongoose's connection. Every write is one atomic single-document
 * operation (insertOne, findOneAndUpdate, updateOne/updateMany): claims and take-overs are conditional updates
 * with a sort, patches are conditional $set/$addToSet updates; nothing reads, changes and writes back, and nothing
 * needs a transaction. Several API replicas share one database.
 */
export class MongoTaskRepository implements TaskRepository {
  private connection?: Connection;
  private closed = false;
  private readonly fullPageBytes: number;

  constructor(
    private readonly settings: MongoStoreSettings,
    private readonly logger: Logger,
  ) {
    this.fullPageBytes = settings.fullPageBytes ?? DEFAULT_FULL_PAGE_BYTES;
  }

  /** Connects (waiting for the server, retrying with a log line) and creates the indexes. */
  async connect(signal?: AbortSignal): Promise<void> {
    const where = redactUrl(this.settings.url);
    for (let attempt = 1; ; attempt++) {
      try {
        const connection = mongoose.createConnection(this.settings.url, {
          serverSelectionTimeoutMS: this.settings.serverSelectionTimeoutMs,
          // Without buffering an operation fails while the server is away (503), instead of waiting unbounded.
          bufferCommands: false,
          autoIndex: false,
        });
        await connection.asPromise();
        this.connection = connection;
        break;
      } catch (err) {
        if (signal?.aborted) throw err;
        this.logger.warn({ store: where, attempt, err: mongoMessage(err) }, 'waiting for MongoDB');
        await new Promise((resolve) => setTimeout(resolve, Math.min(500 * attempt, 5000)));
      }
    }
    for (const index of INDEXES) await this.collection.createIndex(index.key, { unique: index.unique ?? false });
    this.connection.on('disconnected', () => this.logger.warn({ store: where }, 'lost the connection to MongoDB; retrying'));
    this.connection.on('reconnected', () => this.logger.info({ store: where }, 'connected to MongoDB again'));
    this.logger.info({ store: where }, 'connected to MongoDB');
  }

  private get collection() {
    if (this.closed || !this.connection) throw new DomainError(ErrorCode.Unavailable, 'the task store is closed');
    return this.connection.collection<Doc>('tasks');
  }

  async insert(task: TaskRecord, owner: string): Promise<void> {
    const doc = toDocument(structuredClone(task), owner);
    await this.op(async () => {
      try {
        await this.collection.insertOne(doc as Doc);
      } catch (err) {
        if ((err as { code?: number }).code === 11000) throw new DomainError(ErrorCode.Conflict, `task ${task.id} already exists`);
        throw err;
      }
    });
  }

  async get(id: string, scope: TaskScope): Promise<StoredTask | undefined> {
    const doc = await this.op(() => this.collection.findOne({ task_id: id, ...scopeFilter(scope) }));
    return doc ? toStoredTask(doc) : undefined;
  }

  async getUnscoped(id: string): Promise<StoredTask | undefined> {
    return this.get(id, { all: true });
  }

  async getForView(id: string, view: TaskView, scope: TaskScope): Promise<ViewedTask | undefined> {
    // BASIC reads what FULL reads: the document keeps logs and inputs whole, and the view drops the rest.
    const projection = view === TaskView.MINIMAL ? { _id: 0, task_id: 1, state: 1 } : { _id: 1, task_id: 1, state: 1, record: 1, logs: 1 };
    const doc = await this.op(() => this.collection.findOne({ task_id: id, ...scopeFilter(scope) }, { projection }));
    if (!doc) return undefined;
    return view === TaskView.MINIMAL ? { id: doc.task_id, state: doc.state } : toRecord(doc);
  }

  async list(scope: TaskScope, query: TaskListQuery): Promise<TaskListPage> {
    const after = query.pageToken === undefined ? undefined : new mongoose.Types.ObjectId(decodePageToken(query.pageToken));
    // Full pages read logs and record sizes first and the records of the tasks that fit the byte budget after.
    const projection = query.fields === 'minimal' ? { _id: 1, task_id: 1, state: 1 } : { _id: 1, task_id: 1, state: 1, logs: 1, record_bytes: 1, content_bytes: 1 };
    const docs = await this.op(() =>
      this.collection.find(listFilter(scope, query, after), { projection }).sort({ _id: -1 }).limit(query.pageSize + 1).toArray(),
    );
    const candidates = docs.slice(0, query.pageSize);
    let fitting = candidates.length;
    if (query.fields !== 'minimal') {
      let total = 0;
      for (let i = 0; i < candidates.length; i++) {
        // Documents stored before record_bytes was kept count their logs only; BASIC pages leave contents out.
        const { record_bytes = 0, content_bytes = 0, logs } = candidates[i];
        total += record_bytes - (query.fields === 'basic' ? content_bytes : 0) + JSON.stringify(logs ?? []).length;
        if (total > this.fullPageBytes && i > 0) {
          fitting = i;
          break;
        }
      }
    }
    const page = candidates.slice(0, fitting);
    const more = docs.length > fitting;
    let tasks: ViewedTask[];
    if (query.fields === 'minimal') tasks = page.map((doc) => ({ id: doc.task_id, state: doc.state }));
    else {
      const ids = page.map((doc) => doc._id);
      const records = await this.op(() => this.collection.find({ _id: { $in: ids } }, { projection: { _id: 1, record: 1 } }).toArray());
      const recordOf = new Map(records.map((doc) => [doc._id.toHexString(), doc.record]));
      tasks = page.map((doc) => toRecord({ ...doc, record: recordOf.get(doc._id.toHexString()) ?? '{}' }));
    }
    return {
      tasks,
      ...(more ? { nextPageToken: encodePageToken(page[page.length - 1]._id.toHexString()) } : {}),
    };
  }

  async findByState(states: readonly TesState[], limit: number): Promise<TaskProgressView[]> {
    if (states.length === 0 || limit < 1) return [];
    const projection = { ...PROGRESS_PROJECTION, logs: 1 };
    const docs = await this.op(() => this.collection.find({ state: { $in: [...new Set(states)] } }, { projection }).sort({ _id: 1 }).limit(limit).toArray());
    return docs.map((doc) => ({ id: doc.task_id, state: doc.state, logs: toLogs(doc), control: toControl(doc) }));
  }

  async patch(id: string, patch: TaskPatch): Promise<PatchResult> {
    const snapshot = structuredClone(patch);
    const conditional = patchUpdate(id, snapshot);
    for (let tries = 1; ; tries++) {
      if (conditional) {
        // The answer carries the control fields only: an update's reply does not grow with the task.
        const options = { returnDocument: 'after' as const, projection: PROGRESS_PROJECTION };
        const doc = await this.op(() => this.collection.findOneAndUpdate(conditional.filter as never, conditional.update as never, options));
        if (doc) return { applied: true, task: { id: doc.task_id, state: doc.state, control: toControl(doc) } };
      }
      // Why it did not apply, from the task as it is now (or, rarely, it changed in between: try again).
      const current = await this.op(() => this.collection.findOne({ task_id: id }, { projection: PROGRESS_PROJECTION }));
      if (!current) return { applied: false, reason: 'missing' };
      const refusal = patchRefusal({ state: current.state, control: toControl(current) }, snapshot) ?? (conditional ? undefined : 'state');
      if (refusal) return { applied: false, reason: refusal };
      if (tries >= PATCH_TRIES) throw new DomainError(ErrorCode.Unavailable, `task ${id} kept changing while a change was written; try again`, true);
    }
  }

  async claimNext(holder: string, leaseMs: number, options: ClaimOptions = {}): Promise<StoredTask | undefined> {
    const now = Date.now();
    const { filter, update } = claimUpdate(holder, now + leaseMs, randomUUID(), new Date(now).toISOString(), options.skip);
    const doc = await this.op(() => this.collection.findOneAndUpdate(filter as never, update as never, { sort: { _id: 1 }, returnDocument: 'after' }));
    return doc ? toStoredTask(doc) : undefined;
  }

  async renewLeases(holder: string, leaseMs: number): Promise<HeldTask[]> {
    const until = Date.now() + leaseMs;
    await this.op(() => this.collection.updateMany(heldFilter(holder) as never, { $set: { 'control.lease.until': until } } as never));
    return this.heldBy(holder);
  }

  async heldBy(holder: string): Promise<HeldTask[]> {
    const docs = await this.op(() => this.collection.find(heldFilter(holder) as never, { projection: { task_id: 1, state: 1, control: 1 } }).sort({ _id: 1 }).toArray());
    return docs.map((doc) => ({ id: doc.task_id, state: doc.state, token: doc.control.lease?.token ?? '' }));
  }

  async countHeld(holder: string): Promise<number> {
    return this.op(() => this.collection.countDocuments(heldFilter(holder) as never));
  }

  async findExpiredLeases(now: number, limit: number): Promise<StoredTask[]> {
    if (limit < 1) return [];
    const docs = await this.op(() => this.collection.find(expiredFilter(now) as never).sort({ 'control.lease.until': 1, _id: 1 }).limit(limit).toArray());
    return docs.map(toStoredTask);
  }

  async takeOver(id: string, expectedToken: string | undefined, holder: string, leaseMs: number): Promise<StoredTask | undefined> {
    const now = Date.now();
    const filter: Filter = {
      task_id: id,
      state: { $in: [...HELD_STATES] },
      $or: [{ 'control.lease': null }, { 'control.lease.until': { $lt: now } }],
      // An absent token matches a task without a lease (null matches a missing field).
      'control.lease.token': expectedToken ?? null,
    };
    const update: Update = { $set: { 'control.lease': { holder, until: now + leaseMs, token: randomUUID() } } };
    const doc = await this.op(() => this.collection.findOneAndUpdate(filter as never, update as never, { returnDocument: 'after' }));
    return doc ? toStoredTask(doc) : undefined;
  }

  async releaseLease(id: string, token: string): Promise<boolean> {
    const result = await this.op(() =>
      this.collection.updateOne({ task_id: id, 'control.lease.token': token, state: { $in: [...HELD_STATES] } } as never, { $set: { 'control.lease.until': 0 } } as never),
    );
    return result.modifiedCount > 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.connection?.close();
  }

  /** Runs one operation; a server that cannot be reached becomes UNAVAILABLE (the API answers 503). */
  private async op<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof DomainError) throw err;
      // By the error's kind, or by the connection: a socket that just broke may surface as any driver error.
      if (isUnreachable(err) || this.connection?.readyState !== mongoose.ConnectionStates.connected) {
        throw new DomainError(ErrorCode.Unavailable, `the task store (MongoDB) cannot be reached: ${mongoMessage(err)}`, true);
      }
      throw new DomainError(ErrorCode.Internal, `task store: ${(err as Error)?.name ?? 'error'}: ${mongoMessage(err)}`);
    }
  }
}

function isUnreachable(err: unknown): boolean {
  const name = (err as { name?: string })?.name ?? '';
  return /MongoNetwork|MongoServerSelection|MongoNotConnected|MongoTopologyClosed|PoolClosed|PoolCleared|MongooseServerSelection|ECONNRESET|ECONNREFUSED/.test(name) || /connection .*closed|ECONNRESET|ECONNREFUSED|socket/i.test((err as Error)?.message ?? '');
}

/** A driver error's message without credentials (connection strings may carry them). */
function mongoMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/(mongodb(?:\+srv)?:\/\/)[^@/\s]*@/gi, '$1***@');
}
