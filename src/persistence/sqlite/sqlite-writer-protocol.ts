import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { WriteName } from './sqlite-task-writes';

// Messages between the repository (main thread) and the writer thread that owns the write connection.

export interface WriteRequest {
  seq: number;
  name: WriteName;
  args: unknown[];
}

/** Writes go in one message per event-loop turn of the sender: posting costs more than cloning a few more. */
export type ToWriter = { kind: 'writes'; writes: WriteRequest[] } | { kind: 'close' };

export type WriteOutcome = { seq: number; ok: true; value: unknown } | { seq: number; ok: false; error: WireError };

/** One message per committed batch; `closed` once the connection is closed after the last batch. */
export type FromWriter = { kind: 'committed'; outcomes: WriteOutcome[] } | { kind: 'closed' };

/** The thread's first word, on the start-up port: it has opened the file, or why not. */
export type WriterStart = { ok: true } | { ok: false; error: WireError };

/** An error as it crosses threads: structured clone keeps an Error's message but not a DomainError's code. */
export interface WireError {
  message: string;
  stack?: string;
  domain?: { code: ErrorCode; transient: boolean; retryAfterMs?: number };
}

export function toWireError(err: unknown): WireError {
  if (err instanceof DomainError) return { message: err.message, domain: { code: err.code, transient: err.transient, retryAfterMs: err.retryAfterMs } };
  if (err instanceof Error) return { message: err.message, stack: err.stack };
  return { message: String(err) };
}

export function fromWireError(wire: WireError): Error {
  if (wire.domain) return new DomainError(wire.domain.code, wire.message, wire.domain.transient, wire.domain.retryAfterMs);
  const err = new Error(wire.message);
  if (wire.stack) err.stack = wire.stack;
  return err;
}
