import type { BackendRef, TesOutputFileLog } from './tes-task';

// What a run reports as it goes, whoever runs it (the local backend today, remote runners later). The scheduler
// turns each update into a task patch (task-patch.ts); updates never change the store themselves.

export type TaskUpdate =
  | { kind: 'running' }
  | { kind: 'executor-started'; index: number; startTime: string }
  | { kind: 'executor-output'; index: number; stdout: string; stderr: string }
  | { kind: 'executor-finished'; index: number; endTime: string; exitCode: number; stdout: string; stderr: string }
  | { kind: 'output-uploaded'; outputs: TesOutputFileLog[] }
  | { kind: 'metadata'; values: Record<string, string> }
  | { kind: 'system-log'; message: string }
  /**
   * Keys to set in the task's backend reference: a fuller reference once the backend knows it (a batch scheduler's
   * job id after the submit), or what a remote runner reported, kept there for whoever settles the run.
   */
  | { kind: 'backend-ref'; ref: BackendRef }
  /**
   * The last update of a run. `reason` goes to system_logs (required for SYSTEM_ERROR). PREEMPTED: the scheduler the
   * task ran under took its resources back (a Slurm preemption).
   */
  | { kind: 'finished'; state: 'COMPLETE' | 'EXECUTOR_ERROR' | 'SYSTEM_ERROR' | 'PREEMPTED'; reason?: string };
