import { DomainError, ErrorCode } from '../common/domain-error';
import { TesState } from './tes-task';

// The one place that says which state changes are legal. The store applies them with compare-and-set.
const NEXT: Readonly<Record<TesState, readonly TesState[]>> = {
  [TesState.UNKNOWN]: [],
  [TesState.QUEUED]: [TesState.INITIALIZING, TesState.CANCELED, TesState.SYSTEM_ERROR],
  // INITIALIZING -> COMPLETE/EXECUTOR_ERROR: a task without executors ends after its transfers.
  [TesState.INITIALIZING]: [TesState.RUNNING, TesState.COMPLETE, TesState.EXECUTOR_ERROR, TesState.SYSTEM_ERROR, TesState.CANCELED],
  [TesState.RUNNING]: [TesState.COMPLETE, TesState.EXECUTOR_ERROR, TesState.SYSTEM_ERROR, TesState.CANCELED],
  [TesState.PAUSED]: [TesState.RUNNING, TesState.SYSTEM_ERROR, TesState.CANCELED],
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

export const ACTIVE_STATES: readonly TesState[] = [TesState.INITIALIZING, TesState.RUNNING];

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
