import { DomainError, ErrorCode } from './domain-error';
import { assertTransition, canTransition, isTerminal, statesLeadingTo, TERMINAL_STATES } from './task-state-machine';
import { ALL_STATES, TesState } from './tes-task';

describe('task state machine', () => {
  it('moves a task forward through its life', () => {
    expect(canTransition(TesState.QUEUED, TesState.INITIALIZING)).toBe(true);
    expect(canTransition(TesState.INITIALIZING, TesState.RUNNING)).toBe(true);
    expect(canTransition(TesState.RUNNING, TesState.COMPLETE)).toBe(true);
    expect(canTransition(TesState.RUNNING, TesState.EXECUTOR_ERROR)).toBe(true);
  });

  it('lets a task without executors finish straight from INITIALIZING', () => {
    expect(canTransition(TesState.INITIALIZING, TesState.COMPLETE)).toBe(true);
  });

  it('never leaves a terminal state', () => {
    for (const from of TERMINAL_STATES) {
      for (const to of ALL_STATES) expect(canTransition(from, to)).toBe(false);
      expect(isTerminal(from)).toBe(true);
    }
  });

  it('cannot go backwards or skip the claim', () => {
    expect(canTransition(TesState.RUNNING, TesState.QUEUED)).toBe(false);
    expect(canTransition(TesState.QUEUED, TesState.RUNNING)).toBe(false);
    expect(canTransition(TesState.QUEUED, TesState.COMPLETE)).toBe(false);
  });

  it('cancels a queued task at once and a started one through CANCELING', () => {
    expect(statesLeadingTo(TesState.CANCELED).sort()).toEqual([TesState.QUEUED, TesState.CANCELING].sort());
    expect(statesLeadingTo(TesState.CANCELING).sort()).toEqual([TesState.INITIALIZING, TesState.RUNNING, TesState.PAUSED].sort());
    expect(canTransition(TesState.CANCELING, TesState.COMPLETE)).toBe(false);
  });

  it('lets a lost run start over as a new attempt, staging again', () => {
    expect(canTransition(TesState.RUNNING, TesState.INITIALIZING)).toBe(true);
    expect(canTransition(TesState.INITIALIZING, TesState.INITIALIZING)).toBe(true);
    expect(canTransition(TesState.CANCELING, TesState.INITIALIZING)).toBe(false);
  });

  it('throws a CONFLICT domain error for an illegal change', () => {
    expect(() => assertTransition(TesState.COMPLETE, TesState.RUNNING)).toThrow(DomainError);
    try {
      assertTransition(TesState.COMPLETE, TesState.RUNNING);
    } catch (err) {
      expect((err as DomainError).code).toBe(ErrorCode.Conflict);
    }
  });
});
