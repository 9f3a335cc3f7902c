import { DomainError, ErrorCode } from './domain-error';
import { TesState } from './tes-task';

// The one place that says which state changes are legal. The store applies them as patches with compare-and-set.
const NEXT: Readonly<Record<TesState, readonly TesState[]>> = {
  [TesState.UNKNOWN]: [],
  [TesState.QUEUED]: [TesState.INITIALIZING, TesState.CANCELED, TesState.SYSTEM_ERROR],
  // INITIALIZING -> COMPLETE/EXECUTOR_ERROR: a task without executors ends after its transfers.
  // -> INITIALIZING: a new attempt after a lost run stages again.
  // -> QUEUED: the backend cannot take it now (its runner is down); it waits again, held by no one.
  // -> PREEMPTED: a batch scheduler (Slurm) took the task's resources back.
  [TesState.INITIALIZING]: [TesState.QUEUED, TesState.INITIALIZING, TesState.RUNNING, TesState.COMPLETE, TesState.EXECUTOR_ERROR, TesState.SYSTEM_ERROR, TesState.PREEMPTED, TesState.CANCELING],
  [TesState.RUNNING]: [TesState.INITIALIZING, TesState.COMPLETE, TesState.EXECUTOR_ERROR, TesState.SYSTEM_ERROR, TesState.PREEMPTED, TesState.CANCELING],
  [TesState.PAUSED]: [TesState.RUNNING, TesState.SYSTEM_ERROR, TesState.CANCELING],
  // A cancel is recorded at once as CANCELING; the holder ends it CANCELED when the work is gone.
  [TesState.CANCELING]: [TesState.CANCELED, TesState.SYSTEM_ERROR],
  [TesState.COMPLETE]: [],
  [TesState.EXECUTOR_ERROR]: [],
  [TesState.SYSTEM_ERROR]: [],
  [TesState.CANCELED]: [],
  [TesState.PREEMPTED]: [],
};

export const TERMINAL_STATES: readonly TesState[] = [
  TesState.COMPLETE,
  TesState.EXECUTOR_ERROR,
  TesState.SYSTEM_ERROR,
  TesState.CANCELED,
  TesState.PREEMPTED,
];

/** States in which a replica holds the task under a lease, its work exists somewhere and its run still reports. */
export const HELD_STATES: readonly TesState[] = [TesState.INITIALIZING, TesState.RUNNING, TesState.PAUSED, TesState.CANCELING];

export function isTerminal(state: TesState): boolean {
  return TERMINAL_STATES.includes(state);
}

export function canTransition(from: TesState, to: TesState): boolean {
  return NEXT[from].includes(to);
}

/** States from which `to` may be reached: the `from` set of a compare-and-set transition. */
export function statesLeadingTo(to: TesState): TesState[] {
  return (Object.keys(NEXT) as TesState[]).filter((from) => NEXT[from].includes(to));
}

export function assertTransition(from: TesState, to: TesState): void {
  if (!canTransition(from, to)) {
    throw new DomainError(ErrorCode.Conflict, `task cannot move from ${from} to ${to}`);
  }
}
