import type { TaskScope } from '../domain/principal';
import type { PatchResult, TaskPatch } from '../domain/task-patch';
import type { StoredTask, TaskRecord, TaskView, TesState } from '../domain/tes-task';

// The task store port. Implementations: sqlite/ (embedded default). MongoDB joins later and must pass
// test/contract/task-repository.contract.ts unchanged.
//
// Leases: a replica claims a QUEUED task (claimNext), renews its leases while it runs them, and another replica
// takes a task over only after its lease expired, by compare-and-set on the lease token (takeOver). Every write
// of a run carries its lease token (TaskPatch.lease_token), so a replica that lost a task cannot change it.
//
// Ownership: every task records its owner at insert. The reads that serve API callers (get, getForView, list) take
// the caller's TaskScope by type and put the owner into the query itself; a task outside the scope reads as absent.
// The scheduler's reads (getUnscoped, findByState, claims, leases) see every task.

export const TASK_REPOSITORY = Symbol('TASK_REPOSITORY');

export interface TagFilter {
  key: string;
  /** Absent or empty: the key must exist, any value. */
  value?: string;
}

export interface TaskListQuery {
  namePrefix?: string;
  state?: TesState;
  tags: TagFilter[];
  pageSize: number;
  /** Opaque token from a previous page; the repository rejects a token it did not issue (INVALID_ARGUMENT). */
  pageToken?: string;
  /**
   * 'minimal' reads only id and state; 'full' reads whole records; 'basic' may leave out what BASIC does not show
   * (inputs' content, executors' stdout and stderr, system_logs).
   */
  fields: 'minimal' | 'basic' | 'full';
}

/** A task as a view reads it: id and state always, the rest as the view needs; never the control fields. */
export type ViewedTask = Pick<TaskRecord, 'id' | 'state'> & Partial<TaskRecord>;

export interface TaskListPage {
  /**
   * Newest first. With fields 'minimal' only id and state are set. A full page also ends early, with a next page
   * token, where the next task would take it past the store's byte budget for a page (at least one task per page).
   */
  tasks: ViewedTask[];
  nextPageToken?: string;
}

/** The default byte budget of a full list page (store.full_page_bytes): tasks as stored, JSON. */
export const DEFAULT_FULL_PAGE_BYTES = 16 * 1024 * 1024;

/** A task without its request, as the scheduler's bookkeeping reads it. */
export type TaskProgressView = Pick<StoredTask, 'id' | 'state' | 'logs' | 'control'>;

export interface ClaimOptions {
  /** Ids of QUEUED tasks not to claim now (they wait for something this replica knows is not there yet). */
  skip?: readonly string[];
}

/** A task a holder has under lease, as a heartbeat sees it. */
export interface HeldTask {
  id: string;
  state: TesState;
  token: string;
}

export interface TaskRepository {
  /**
   * Stores a new task durably before resolving (attempt 0, no lease), owned by `owner` (Principal.name). Fails with
   * CONFLICT if the id exists.
   */
  insert(task: TaskRecord, owner: string): Promise<void>;

  /** A task with its control fields, if it is in the caller's scope (a cancel reads this). */
  get(id: string, scope: TaskScope): Promise<StoredTask | undefined>;

  /** A task with its control fields, whoever owns it: for the scheduler and the backends, never for a caller. */
  getUnscoped(id: string): Promise<StoredTask | undefined>;

  /**
   * What a view of one task in the caller's scope shows, read as cheaply as the store allows (pollers call this
   * most): MINIMAL only id and state; BASIC may leave out what BASIC does not show (inputs' content, executors'
   * stdout and stderr, system_logs).
   */
  getForView(id: string, view: TaskView, scope: TaskScope): Promise<ViewedTask | undefined>;

  /** One page of the caller's scope, newest first; a page token pages on within the scope it is used in. */
  list(scope: TaskScope, query: TaskListQuery): Promise<TaskListPage>;

  /** Tasks in the given states, oldest first, without their requests (no executors, inputs or contents). */
  findByState(states: readonly TesState[], limit: number): Promise<TaskProgressView[]>;

  /** Applies a patch atomically if its guards hold (see task-patch.ts); otherwise changes nothing and says why. */
  patch(id: string, patch: TaskPatch): Promise<PatchResult>;

  /**
   * In one atomic operation: takes the oldest QUEUED task, moves it to INITIALIZING as attempt 1 (its first log
   * gets a start_time), and leases it to `holder` for `leaseMs` with a new token. Undefined when none is QUEUED.
   */
  claimNext(holder: string, leaseMs: number, options?: ClaimOptions): Promise<StoredTask | undefined>;

  /** Extends every lease `holder` has to now + leaseMs; resolves to the tasks it holds. */
  renewLeases(holder: string, leaseMs: number): Promise<HeldTask[]>;

  /** The tasks `holder` has under lease (expired or not), without changing them. */
  heldBy(holder: string): Promise<HeldTask[]>;

  /** How many tasks `holder` has under lease: its share of the compute backend's capacity. */
  countHeld(holder: string): Promise<number>;

  /** Held-state tasks whose lease ended before `now` (epoch ms), or that have none; longest expired first. */
  findExpiredLeases(now: number, limit: number): Promise<StoredTask[]>;

  /**
   * Compare-and-set on the lease token: while the task is in a held state, its lease has ended and its token is
   * `expectedToken`, leases it to `holder` with a new token. Exactly one of several replicas trying wins.
   */
  takeOver(id: string, expectedToken: string | undefined, holder: string, leaseMs: number): Promise<StoredTask | undefined>;

  /** Ends the lease with this token at once, so another replica may take the task over without waiting. */
  releaseLease(id: string, token: string): Promise<boolean>;

  close(): Promise<void>;
}
