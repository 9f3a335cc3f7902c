import type { TaskRecord, TesState } from '../tasks/tes-task';

// The task store port. Implementations: sqlite/ (embedded default). MongoDB joins later and must pass
// test/contract/task-repository.contract.ts unchanged.

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
  /** 'minimal' reads only id and state; 'full' reads whole records. */
  fields: 'minimal' | 'full';
}

export interface TaskListPage {
  /** Newest first. With fields 'minimal' only id and state are set. */
  tasks: Array<Pick<TaskRecord, 'id' | 'state'> & Partial<TaskRecord>>;
  nextPageToken?: string;
}

/** Changes a copy of the stored task in place; must not change id or state. */
export type TaskMutation = (task: TaskRecord) => void;

export interface TaskRepository {
  /** Stores a new task durably before resolving. Fails with CONFLICT if the id exists. */
  insert(task: TaskRecord): Promise<void>;

  get(id: string): Promise<TaskRecord | undefined>;

  list(query: TaskListQuery): Promise<TaskListPage>;

  /**
   * Compare-and-set: if the task's state is one of `from`, set it to `to` and apply `mutate`, atomically.
   * Resolves to the updated task, or undefined when the task is missing or in another state.
   * Callers check legality with the state machine first (TaskStateService does).
   */
  transition(id: string, from: readonly TesState[], to: TesState, mutate?: TaskMutation): Promise<TaskRecord | undefined>;

  /** Compare-and-set without a state change: applies `mutate` only while the state is one of `inStates`. */
  update(id: string, inStates: readonly TesState[], mutate: TaskMutation): Promise<TaskRecord | undefined>;

  /** Tasks in the given states, oldest first (the dispatcher's queue and start-up reconciliation). */
  findByState(states: readonly TesState[], limit: number): Promise<TaskRecord[]>;

  close(): Promise<void>;
}
