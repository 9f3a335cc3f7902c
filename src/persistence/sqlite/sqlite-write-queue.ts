import Database from 'better-sqlite3';

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface PendingWrite {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** Thrown out of a batch when SQLite rolled the whole transaction back under an item (disk full, I/O error). */
class BatchAborted extends Error {
  constructor(readonly itemError: unknown) {
    super('the batch transaction was rolled back');
  }
}

/**
 * Group commit for every write of one repository: writes queued during one event-loop turn run in one IMMEDIATE
 * transaction, so they share one fsync. Each runs in its own savepoint, so one that fails is undone alone and the
 * others still commit. Every promise settles only after the commit: a value handed back is durable.
 */
export class SqliteWriteQueue {
  private pending: PendingWrite[] = [];
  private scheduled = false;
  private readonly inSavepoint: Database.Transaction<(work: () => unknown) => unknown>;
  private readonly batch: Database.Transaction<(items: PendingWrite[]) => Outcome[]>;

  /** `toDomainError` maps what a failed batch or item threw to what its promise rejects with. */
  constructor(
    private readonly db: Database.Database,
    private readonly toDomainError: (err: unknown) => unknown,
  ) {
    // Called inside the batch transaction, better-sqlite3 runs this as a savepoint.
    this.inSavepoint = db.transaction((work: () => unknown) => work());
    this.batch = db.transaction((items: PendingWrite[]) =>
      items.map((item): Outcome => {
        try {
          return { ok: true, value: this.inSavepoint(item.work) };
        } catch (error) {
          // Some errors end the whole transaction, not just the savepoint: what ran before is gone too.
          if (!db.inTransaction) throw new BatchAborted(error);
          return { ok: false, error };
        }
      }),
    );
  }

  /** Queues a synchronous write; it runs inside the next batch transaction. */
  enqueue<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits what is queued now (close() calls it before closing the database). */
  flush(): void {
    const items = this.pending;
    this.pending = [];
    this.scheduled = false;
    if (items.length === 0) return;
    let outcomes: Outcome[];
    try {
      outcomes = this.batch.immediate(items);
    } catch (err) {
      const failure = this.toDomainError(err instanceof BatchAborted ? err.itemError : err);
      items.forEach((item) => item.reject(failure));
      return;
    }
    items.forEach((item, i) => {
      const outcome = outcomes[i];
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(this.toDomainError(outcome.error));
    });
  }
}
