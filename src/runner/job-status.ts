import * as path from 'node:path';
import { listFiles, openForReadingInside } from './job-files';
import type { PulsarStatus } from './job-manager';
import { JobState } from './job-state';

// The status answer (pulsar-protocol reference §6): a short one while the job is not over, the full one after
// (exactly Pulsar's keys, `complete` as a string). Streams are cut to their first MiB, as Pulsar keeps them.

const MAXIMUM_STREAM_BYTES = 1024 * 1024;
const TERMINAL: readonly PulsarStatus[] = ['complete', 'failed', 'cancelled', 'lost'];

export interface StatusContext {
  id: string;
  dir: string;
  status: PulsarStatus;
  version: string;
  systemProperties: Record<string, unknown>;
}

export async function statusBody(context: StatusContext): Promise<Record<string, unknown>> {
  const { id, dir, status } = context;
  if (!TERMINAL.includes(status)) return { complete: 'false', status, job_id: id };
  const lost = status === 'lost';
  const metadata = path.join(dir, 'metadata');
  const stream = (name: string) => (lost ? Promise.resolve('') : readHead(dir, `metadata/${name}`));
  const list = (sub: string, recursive: boolean) => (lost ? Promise.resolve([]) : listFiles(path.join(dir, sub), recursive));
  const [returncode, stdout, stderr, jobStdout, jobStderr, working, metadataContents, outputs, jobContents] = await Promise.all([
    lost ? null : new JobState(dir).returnCode(),
    stream('tool_stdout'),
    stream('tool_stderr'),
    stream('job_stdout'),
    stream('job_stderr'),
    list('working', true),
    list('metadata', true),
    list('outputs', true),
    list('', false),
  ]);
  return {
    job_id: id,
    complete: 'true',
    status,
    returncode,
    stdout,
    stderr,
    job_stdout: jobStdout,
    job_stderr: jobStderr,
    working_directory: path.join(dir, 'working'),
    metadata_directory: metadata,
    job_directory: dir,
    working_directory_contents: working,
    metadata_directory_contents: metadataContents,
    outputs_directory_contents: outputs,
    job_directory_contents: jobContents,
    system_properties: context.systemProperties,
    pulsar_version: context.version,
    realized_dynamic_file_sources: [],
  };
}

/** The first MiB of a file below the job directory as text; '' when it is absent. */
async function readHead(dir: string, relative: string): Promise<string> {
  const handle = await openForReadingInside(dir, relative);
  if (!handle) return '';
  try {
    const buffer = Buffer.alloc(Math.min((await handle.stat()).size, MAXIMUM_STREAM_BYTES));
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled).toString('utf8');
  } finally {
    await handle.close();
  }
}

