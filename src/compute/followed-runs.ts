// The runs a backend follows in this process, by task id: what release, settled and detach do with them is the
// same for every backend (stop following, let the work go on, wait until the run has let go).

export interface FollowedRun {
  /** Stop following and reporting; leave the work running (shutdown, or the task is held elsewhere now). */
  readonly detach: AbortController;
  /** Settles once this process follows the run no more (its clean-up included). */
  readonly done: Promise<unknown>;
}

export class FollowedRuns<R extends FollowedRun> extends Map<string, R> {
  /** Stops following one task's run, and resolves once it has let go. */
  async release(taskId: string): Promise<void> {
    const run = this.get(taskId);
    if (!run) return;
    run.detach.abort();
    await run.done;
  }

  /** Resolves when this process follows no run of the task any more. */
  async settled(taskId: string): Promise<void> {
    await this.get(taskId)?.done;
  }

  /**
   * Stops following every run; `meanwhile` runs between the abort and the wait (a backend stopping what would not
   * survive it). Resolves once every run has let go.
   */
  async detachAll(meanwhile?: (taskIds: string[]) => Promise<unknown>): Promise<void> {
    const runs = [...this.entries()];
    for (const [, run] of runs) run.detach.abort();
    await meanwhile?.(runs.map(([id]) => id));
    await Promise.all(runs.map(([, run]) => run.done));
  }
}
