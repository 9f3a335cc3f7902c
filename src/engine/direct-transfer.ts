import * as path from 'node:path';
import { DomainError, ErrorCode } from '../domain/domain-error';
import type { ListedObject } from '../storage/storage-backend';
import { ExecutionPlan, isInside, PlanInput, PlanOutput, staticPrefix } from './execution-plan';
import { globMatcher, joinUrl } from './output-files';

// A transfer-only task (inputs and outputs, no executors) as copies from source URLs to destination URLs. Which
// input provides an output's files is worked out from container paths, as the task directory would look had the
// inputs been staged into it: an input at the output's path, a DIRECTORY input holding it, inputs inside a
// DIRECTORY output. Nothing here moves bytes; Staging.transferDirect does.

/** Where a file's bytes come from: an object at a URL (its size when a listing told it), or a literal content. */
export type CopySource = { input: PlanInput; url: string; size?: number } | { input: PlanInput; content: string };

export interface PlannedCopy {
  output: PlanOutput;
  source: CopySource;
  /** The file's container path, as the output log reports it. */
  containerPath: string;
  /** Where the file goes. */
  url: string;
}

/** Every file below a DIRECTORY input. */
export type InputListing = (input: PlanInput) => Promise<ListedObject[]>;

/**
 * The copies one output needs. `listing` is asked only for DIRECTORY inputs the output draws on. A FILE or
 * DIRECTORY output nothing provides fails ("does not exist"), as it would find nothing in a staged task
 * directory; a glob that matches nothing is noted through `log`, not an error.
 */
export async function plannedCopies(plan: ExecutionPlan, output: PlanOutput, listing: InputListing, log: (message: string) => void): Promise<PlannedCopy[]> {
  const copy = (containerPath: string, source: CopySource, url: string): PlannedCopy => ({ output, source, containerPath, url });
  if (output.glob) {
    const matches = globMatcher(output.path);
    const prefix = output.glob.prefix;
    const found = await filesUnder(plan, staticPrefix(output.path), listing);
    const copies = [...found].filter(([file]) => matches(file)).map(([file, source]) => copy(file, source, joinUrl(output.url, path.posix.relative(prefix, file))));
    if (copies.length === 0) log(`outputs[${output.index}]: ${output.path} matched no files`);
    return copies;
  }
  const atPath = plan.inputs.find((input) => input.path === output.path);
  const holdsInputs = plan.inputs.some((input) => input.path !== output.path && isInside(input.path, output.path));
  if (output.type === 'FILE') {
    if (atPath?.type === 'DIRECTORY' || holdsInputs) throw new DomainError(ErrorCode.StorageFailed, `${output.path} is not a file`);
    if (atPath) return [copy(output.path, sourceOf(atPath), output.url)];
    const holder = holdingDirectory(plan, output.path);
    const relative = holder && path.posix.relative(holder.path, output.path);
    const listed = holder ? await listing(holder) : [];
    const entry = listed.find((file) => file.relativePath === relative);
    if (!entry && listed.some((file) => file.relativePath.startsWith(`${relative}/`))) throw new DomainError(ErrorCode.StorageFailed, `${output.path} is not a file`);
    if (!holder || !entry) throw new DomainError(ErrorCode.StorageFailed, `${output.path} does not exist`);
    return [copy(output.path, { input: holder, url: entry.url, size: entry.size }, output.url)];
  }
  if (atPath?.type === 'FILE') throw new DomainError(ErrorCode.StorageFailed, `${output.path} is not a directory`);
  const found = await filesUnder(plan, output.path, listing);
  // A listing shows files, not directories: a directory strictly inside an input exists here when it holds a file.
  const exists = atPath !== undefined || holdsInputs || found.size > 0;
  if (!exists) throw new DomainError(ErrorCode.StorageFailed, `${output.path} does not exist`);
  return [...found].map(([file, source]) => copy(file, source, joinUrl(output.url, path.posix.relative(output.path, file))));
}

/** The files below container directory `dir` (container path → source), sorted by path. */
async function filesUnder(plan: ExecutionPlan, dir: string, listing: InputListing): Promise<Map<string, CopySource>> {
  const found = new Map<string, CopySource>();
  const addListed = async (input: PlanInput) => {
    for (const entry of await listing(input)) {
      const file = path.posix.join(input.path, entry.relativePath);
      if (file !== dir && isInside(file, dir)) found.set(file, { input, url: entry.url, size: entry.size });
    }
  };
  const holder = holdingDirectory(plan, dir, true);
  if (holder) await addListed(holder);
  // Inputs inside `dir` are staged into it after the one holding it, outer before inner, so the innermost wins.
  const inside = plan.inputs.filter((input) => input.path !== dir && isInside(input.path, dir)).sort((a, b) => depth(a.path) - depth(b.path));
  for (const input of inside) {
    if (input.type === 'FILE') found.set(input.path, sourceOf(input));
    else await addListed(input);
  }
  return new Map([...found].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The innermost DIRECTORY input with `containerPath` strictly below it (or at it, when `orAt`). */
function holdingDirectory(plan: ExecutionPlan, containerPath: string, orAt = false): PlanInput | undefined {
  return plan.inputs
    .filter((input) => input.type === 'DIRECTORY' && input.url !== undefined && isInside(containerPath, input.path) && (orAt || input.path !== containerPath))
    .sort((a, b) => depth(b.path) - depth(a.path))[0];
}

function sourceOf(input: PlanInput): CopySource {
  if (input.content !== undefined) return { input, content: input.content };
  if (input.url === undefined) throw new DomainError(ErrorCode.InvalidArgument, `inputs[${input.index}]: neither url nor content given`);
  return { input, url: input.url };
}

const depth = (containerPath: string) => containerPath.split('/').length;
