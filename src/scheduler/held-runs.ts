// The runs this replica holds leases for: the scheduler's in-memory half of the lease protocol. The store says who
// holds a task; this says which token and attempt this process's run of it writes with.

export interface HeldRun {
  readonly taskId: string;
  readonly attempt: number;
  /** The lease token every write of this run carries (fencing). */
  readonly token: string;
  /** Registration order: a heartbeat judges only runs registered before it started. */
  readonly since: number;
  /** Settles once the backend has started (or resumed) the work; a cancel waits for it before stopping. */
  starting: Promise<unknown>;
  /** Set while a cancel of this run is being carried out. */
  canceling?: Promise<void>;
  /** The run's end, when writing it failed: written again at the next heartbeat. */
  unwrittenEnd?: () => Promise<void>;
}

export class HeldRuns {
  private readonly runs = new Map<string, HeldRun>();
  private clock = 0;
  /** When this replica let go of a task the store no longer showed under its lease, by task id. */
  private readonly lettingGo = new Map<string, number>();

  /** Registers a run (replacing an earlier one of the same task, e.g. at a new attempt). */
  add(taskId: string, attempt: number, token: string): HeldRun {
    const run: HeldRun = { taskId, attempt, token, since: ++this.clock, starting: Promise.resolve() };
    this.runs.set(taskId, run);
    return run;
  }

  get(taskId: string): HeldRun | undefined {
    return this.runs.get(taskId);
  }

  /** Removes the run if it is still the registered one for its task. */
  delete(run: HeldRun): void {
    if (this.runs.get(run.taskId) === run) this.runs.delete(run.taskId);
  }

  values(): HeldRun[] {
    return [...this.runs.values()];
  }

  /** The heartbeat let go of this task's run: the lease is someone else's, or no one's now. */
  markLetGo(taskId: string): void {
    this.lettingGo.set(taskId, Date.now());
  }

  /** Whether this replica let go of the task less than `ms` ago (forgetting older marks). */
  letGoWithin(taskId: string, ms: number): boolean {
    const now = Date.now();
    for (const [id, at] of this.lettingGo) if (now - at >= ms) this.lettingGo.delete(id);
    return this.lettingGo.has(taskId);
  }

  /** A point in registration order, for a heartbeat to compare `since` against. */
  now(): number {
    return this.clock;
  }
}
