import type Database from 'better-sqlite3';

export type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Thrown out of a batch when SQLite rolled the whole transaction back under an item (disk full, I/O error). */
class BatchAborted extends Error {
  constructor(readonly itemError: unknown) {
    super('the batch transaction was rolled back');
  }
}

/**
 * Group commit: a batch of writes runs in one IMMEDIATE transaction, so they share one fsync. Each runs in its own
 * savepoint, so one that fails is undone alone and the others still commit. The outcomes are known only after the
 * commit: a value handed back is durable.
 */
export class SqliteGroupCommit {
  private readonly inSavepoint: Database.Transaction<(work: () => unknown) => unknown>;
  private readonly batch: Database.Transaction<(works: ReadonlyArray<() => unknown>) => Outcome[]>;

  constructor(db: Database.Database) {
    // Called inside the batch transaction, better-sqlite3 runs this as a savepoint.
    this.inSavepoint = db.transaction((work: () => unknown) => work());
    this.batch = db.transaction((works: ReadonlyArray<() => unknown>) =>
      works.map((work): Outcome => {
        try {
          return { ok: true, value: this.inSavepoint(work) };
        } catch (error) {
          // Some errors end the whole transaction, not just the savepoint: what ran before is gone too.
          if (!db.inTransaction) throw new BatchAborted(error);
          return { ok: false, error };
        }
      }),
    );
  }

  /** Runs and commits `works` in order; a failed commit fails every one of them with its error. */
  commit(works: ReadonlyArray<() => unknown>): Outcome[] {
    if (works.length === 0) return [];
    try {
      return this.batch.immediate(works);
    } catch (err) {
      const error = err instanceof BatchAborted ? err.itemError : err;
      return works.map((): Outcome => ({ ok: false, error }));
    }
  }
}
