import type { FileType, TaskRecord } from '../domain/tes-task';
import type { ListedObject } from '../storage/storage-backend';
import { plannedCopies } from './direct-transfer';
import { buildExecutionPlan, PlanInput } from './execution-plan';

// The matching rules on their own (the copying is tested against real servers in test/engine/direct-transfer.e2e-spec.ts).

const LISTINGS: Record<string, string[]> = {
  's3://b/tree': ['a.txt', 'sub/b.bin', 'sub/deeper/c.txt'],
  's3://b/empty': [],
};
const listing = async (input: PlanInput): Promise<ListedObject[]> =>
  (LISTINGS[input.url!] ?? []).map((relativePath) => ({ url: `${input.url}/${relativePath}`, relativePath }));

/** A transfer-only task as a client sends it (`type` defaults to FILE). */
type Transfer = { inputs?: Array<{ path: string; url?: string; content?: string; type?: FileType }>; outputs?: Array<{ path: string; url: string; path_prefix?: string; type?: FileType }> };

async function copiesOf(task: Transfer, log: (message: string) => void = () => undefined) {
  const typed = <T extends { type?: FileType }>(items: T[] = []) => items.map((item) => ({ type: 'FILE' as FileType, ...item }));
  const plan = buildExecutionPlan({ id: 't', executors: [], inputs: typed(task.inputs), outputs: typed(task.outputs) } as unknown as TaskRecord);
  const all = [];
  for (const output of plan.outputs) all.push(...(await plannedCopies(plan, output, listing, log)));
  return all.map((copy) => [copy.containerPath, 'url' in copy.source ? copy.source.url : `content:${copy.source.content}`, copy.url]);
}

const failureOf = (task: Transfer) => copiesOf(task).then(() => 'no failure', (err: Error) => err.message);

describe('plannedCopies', () => {
  it('copies a FILE input to the FILE output at its path, content included', async () => {
    expect(await copiesOf({ inputs: [{ path: '/x', url: 'ftp://h/x' }], outputs: [{ path: '/x', url: 's3://b/x' }] })).toEqual([['/x', 'ftp://h/x', 's3://b/x']]);
    expect(await copiesOf({ inputs: [{ path: '/x', content: 'hi' }], outputs: [{ path: '/x', url: 's3://b/x' }] })).toEqual([['/x', 'content:hi', 's3://b/x']]);
  });

  it('takes a FILE output or a DIRECTORY output from inside a DIRECTORY input', async () => {
    const inputs = [{ path: '/d', url: 's3://b/tree', type: 'DIRECTORY' as FileType }];
    expect(await copiesOf({ inputs, outputs: [{ path: '/d/sub/b.bin', url: 'ftp://h/b.bin' }] })).toEqual([['/d/sub/b.bin', 's3://b/tree/sub/b.bin', 'ftp://h/b.bin']]);
    expect(await copiesOf({ inputs, outputs: [{ path: '/d/sub', url: 'ftp://h/s/', type: 'DIRECTORY' }] })).toEqual([
      ['/d/sub/b.bin', 's3://b/tree/sub/b.bin', 'ftp://h/s/b.bin'],
      ['/d/sub/deeper/c.txt', 's3://b/tree/sub/deeper/c.txt', 'ftp://h/s/deeper/c.txt'],
    ]);
  });

  it('matches a glob against the listing, relative to its prefix, and notes a glob that matches nothing', async () => {
    const inputs = [{ path: '/d', url: 's3://b/tree', type: 'DIRECTORY' as FileType }];
    expect(await copiesOf({ inputs, outputs: [{ path: '/d/sub/**/*.txt', path_prefix: '/d', url: 'ftp://h/g', type: 'FILE' }] })).toEqual([
      ['/d/sub/deeper/c.txt', 's3://b/tree/sub/deeper/c.txt', 'ftp://h/g/sub/deeper/c.txt'],
    ]);
    expect(await copiesOf({ inputs, outputs: [{ path: '/d/**/*.txt', path_prefix: '/d', url: 'ftp://h/g', type: 'FILE' }] })).toEqual([
      ['/d/a.txt', 's3://b/tree/a.txt', 'ftp://h/g/a.txt'],
      ['/d/sub/deeper/c.txt', 's3://b/tree/sub/deeper/c.txt', 'ftp://h/g/sub/deeper/c.txt'],
    ]);
    const notes: string[] = [];
    expect(await copiesOf({ inputs, outputs: [{ path: '/d/*.none', path_prefix: '/d', url: 'ftp://h/g', type: 'FILE' }] }, (m) => notes.push(m))).toEqual([]);
    expect(notes).toEqual(['outputs[0]: /d/*.none matched no files']);
  });

  it('gathers the inputs inside a DIRECTORY output, the innermost winning where two provide one path', async () => {
    const copies = await copiesOf({
      inputs: [
        { path: '/d', url: 's3://b/tree', type: 'DIRECTORY' },
        { path: '/d/a.txt', url: 'http://h/a.txt' },
        { path: '/d/new/n.txt', content: 'n' },
      ],
      outputs: [{ path: '/d', url: 'irods://z/out', type: 'DIRECTORY' }],
    });
    expect(copies).toEqual([
      ['/d/a.txt', 'http://h/a.txt', 'irods://z/out/a.txt'],
      ['/d/new/n.txt', 'content:n', 'irods://z/out/new/n.txt'],
      ['/d/sub/b.bin', 's3://b/tree/sub/b.bin', 'irods://z/out/sub/b.bin'],
      ['/d/sub/deeper/c.txt', 's3://b/tree/sub/deeper/c.txt', 'irods://z/out/sub/deeper/c.txt'],
    ]);
  });

  it('copies nothing for a DIRECTORY output at an empty DIRECTORY input', async () => {
    expect(await copiesOf({ inputs: [{ path: '/e', url: 's3://b/empty', type: 'DIRECTORY' }], outputs: [{ path: '/e', url: 'ftp://h/e', type: 'DIRECTORY' }] })).toEqual([]);
  });

  it('fails an output that nothing provides, or whose type differs from what provides it', async () => {
    const tree = { path: '/d', url: 's3://b/tree', type: 'DIRECTORY' as FileType };
    expect(await failureOf({ inputs: [tree], outputs: [{ path: '/elsewhere', url: 's3://b/x' }] })).toBe('/elsewhere does not exist');
    expect(await failureOf({ inputs: [tree], outputs: [{ path: '/d/none.txt', url: 's3://b/x' }] })).toBe('/d/none.txt does not exist');
    expect(await failureOf({ inputs: [tree], outputs: [{ path: '/d/none', url: 's3://b/x', type: 'DIRECTORY' }] })).toBe('/d/none does not exist');
    expect(await failureOf({ inputs: [tree], outputs: [{ path: '/d', url: 's3://b/x' }] })).toBe('/d is not a file');
    expect(await failureOf({ inputs: [tree], outputs: [{ path: '/d/sub', url: 's3://b/x' }] })).toBe('/d/sub is not a file');
    expect(await failureOf({ inputs: [{ path: '/f', url: 'ftp://h/f' }], outputs: [{ path: '/f', url: 's3://b/x', type: 'DIRECTORY' }] })).toBe('/f is not a directory');
  });
});
