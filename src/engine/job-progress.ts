// Readers of what a job script leaves in metadata/tesp (job-layout.ts): its progress lines and its files manifest.
// Both may be read while the script still writes them, so a last line without its newline is not trusted yet.

export interface ExecutorProgress {
  index: number;
  startTime?: string;
  endTime?: string;
  exitCode?: number;
}

export interface JobProgress {
  /** In the order the script started them. */
  executors: ExecutorProgress[];
  /** Set once the script ran to its end. */
  endTime?: string;
}

export function parseProgress(text: string): JobProgress {
  const byIndex = new Map<number, ExecutorProgress>();
  let endTime: string | undefined;
  // Whatever follows the last newline is a line still being written.
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  for (const line of complete.split('\n')) {
    const [kind, ...fields] = line.split('\t');
    if (kind === 'end' && fields.length === 1) {
      endTime = fields[0];
      continue;
    }
    const index = Number(fields[0]);
    if (!/^\d+$/.test(fields[0] ?? '')) continue;
    const entry = byIndex.get(index) ?? { index };
    if (kind === 'start' && fields.length === 2) {
      entry.startTime = fields[1];
    } else if (kind === 'exit' && fields.length === 3 && /^\d+$/.test(fields[2])) {
      entry.endTime = fields[1];
      entry.exitCode = Number(fields[2]);
    } else {
      continue;
    }
    byIndex.set(index, entry);
  }
  return { executors: [...byIndex.values()], ...(endTime !== undefined ? { endTime } : {}) };
}

export interface ManifestFile {
  /** Below the task root, without a leading slash (data/out/x). */
  path: string;
  size: number;
}

/** The files manifest: "<size>\t<path>\0" entries; paths may hold tabs and newlines, never NUL. */
export function parseFilesManifest(manifest: Buffer | string): ManifestFile[] {
  const text = typeof manifest === 'string' ? manifest : manifest.toString('utf8');
  const complete = text.slice(0, text.lastIndexOf('\0') + 1);
  const files: ManifestFile[] = [];
  for (const entry of complete.split('\0')) {
    const tab = entry.indexOf('\t');
    if (tab <= 0) continue;
    const size = entry.slice(0, tab);
    if (!/^\d+$/.test(size)) continue;
    files.push({ path: entry.slice(tab + 1), size: Number(size) });
  }
  return files;
}
