import type { TesOutputFileLog } from './tes-task';

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
  /** Keys to set in the task's backend reference (what a remote runner reported, kept for whoever settles the run). */
  | { kind: 'backend-report'; values: Record<string, unknown> }
  /** The last update of a run. `reason` goes to system_logs (required for SYSTEM_ERROR). */
  | { kind: 'finished'; state: 'COMPLETE' | 'EXECUTOR_ERROR' | 'SYSTEM_ERROR'; reason?: string };
