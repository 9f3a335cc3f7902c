import Database from 'better-sqlite3';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCode } from '../../domain/domain-error';
import { TaskRecord, TaskView, TesState } from '../../domain/tes-task';
import { patchForUpdate } from '../../domain/task-patch';
import { MIGRATIONS, SCHEMA_VERSION } from './sqlite-schema';
import { SqliteTaskRepository } from './sqlite-task.repository';

const task = (id: string, state = TesState.QUEUED): TaskRecord => ({
  id,
  state,
  creation_time: '2026-01-01T00:00:00Z',
  executors: [{ image: 'alpine', command: ['true'] }],
  logs: [],
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('SqliteTaskRepository (file and lifecycle)', () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-sqlite-'));
    file = path.join(dir, 'tesp.sqlite');
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** A read-only look at the file beside the repository, as SQLite stores it. */
  function rawRow(id: string): Record<string, unknown> {
    const db = new Database(file, { readonly: true });
    try {
      return db.prepare('SELECT * FROM tasks WHERE id = ?').get(id) as Record<string, unknown>;
    } finally {
      db.close();
    }
  }

  it('opens its file in WAL mode with fsync on commit and a versioned schema', async () => {
    const repo = new SqliteTaskRepository(file);
    await repo.close();
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    } finally {
      db.close();
    }
    // Opening again leaves the schema as it is.
    const again = new SqliteTaskRepository(file);
    await again.close();
  });

  it('refuses a file written by a newer schema', () => {
    const db = new Database(file);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => new SqliteTaskRepository(file)).toThrow(/newer tesp/);
  });

  it('commits every write queued in the same turn as close, in order, then refuses work', async () => {
    const repo = new SqliteTaskRepository(file);
    await repo.insert(task('expired'), '');
    await repo.insert(task('waiting'), '');
    const expired = (await repo.claimNext('replica-gone', 1))!;
    await sleep(20);
    // Queued in one turn and committed by close in the order given: the claim sees the patch before it, the
    // renewal the take-over before it.
    const inserted = repo.insert(task('last-one'), '');
    const patched = repo.patch('waiting', { from: [TesState.QUEUED], attempt: 0, ops: [{ op: 'add_system_log', line: 'before the claim' }] });
    const claimed = repo.claimNext('replica-a', 60_000);
    const taken = repo.takeOver('expired', expired.control.lease!.token, 'replica-b', 60_000);
    const renewed = repo.renewLeases('replica-b', 60_000);
    const released = repo.releaseLease('waiting', 'not-its-token');
    await repo.close();
    await expect(inserted).resolves.toBeUndefined();
    await expect(patched).resolves.toMatchObject({ applied: true });
    await expect(claimed).resolves.toMatchObject({ id: 'waiting', logs: [{ system_logs: ['before the claim'] }] });
    const takeOver = await taken;
    expect(takeOver?.control.lease?.holder).toBe('replica-b');
    await expect(renewed).resolves.toEqual([{ id: 'expired', state: TesState.INITIALIZING, token: takeOver!.control.lease!.token }]);
    await expect(released).resolves.toBe(false);

    const closed = { code: ErrorCode.Unavailable };
    await expect(repo.insert(task('too-late'), '')).rejects.toMatchObject(closed);
    await expect(repo.getUnscoped('last-one')).rejects.toMatchObject(closed);
    await expect(repo.list({ all: true }, { tags: [], pageSize: 1, fields: 'minimal' })).rejects.toMatchObject(closed);
    await expect(repo.findByState([TesState.QUEUED], 1)).rejects.toMatchObject(closed);
    await expect(repo.patch('last-one', { from: [TesState.QUEUED], attempt: 0, ops: [] })).rejects.toMatchObject(closed);
    await expect(repo.claimNext('replica-a', 1)).rejects.toMatchObject(closed);
    await expect(repo.renewLeases('replica-a', 1)).rejects.toMatchObject(closed);
    await expect(repo.heldBy('replica-a')).rejects.toMatchObject(closed);
    await expect(repo.countHeld('replica-a')).rejects.toMatchObject(closed);
    await expect(repo.findExpiredLeases(Date.now(), 1)).rejects.toMatchObject(closed);
    await expect(repo.takeOver('expired', undefined, 'replica-a', 1)).rejects.toMatchObject(closed);
    await expect(repo.releaseLease('expired', 't')).rejects.toMatchObject(closed);
    await repo.close();

    const reopened = new SqliteTaskRepository(file);
    try {
      expect(await reopened.getUnscoped('last-one')).toEqual({ ...task('last-one'), control: { owner: '', attempt: 0, update_seq: 0 } });
      // The renewal after the take-over extended the new lease.
      const renewedLease = (await reopened.getUnscoped('expired'))?.control.lease;
      expect(renewedLease).toEqual({ ...takeOver!.control.lease, until: expect.any(Number) });
      expect(renewedLease!.until).toBeGreaterThanOrEqual(takeOver!.control.lease!.until);
      expect((await reopened.getUnscoped('waiting'))?.control.lease?.holder).toBe('replica-a');
    } finally {
      await reopened.close();
    }
  });

  it('sees tasks written by another connection to the same file', async () => {
    const a = new SqliteTaskRepository(file);
    const b = new SqliteTaskRepository(file);
    try {
      await a.insert(task('shared'), '');
      expect(await b.claimNext('replica-b', 60_000)).toMatchObject({ id: 'shared', state: TesState.INITIALIZING });
      expect(await a.claimNext('replica-a', 60_000)).toBeUndefined();
      expect(await a.heldBy('replica-b')).toEqual([{ id: 'shared', state: TesState.INITIALIZING, token: expect.any(String) }]);
      await expect(b.insert(task('shared'), '')).rejects.toMatchObject({ code: ErrorCode.Conflict });
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('keeps the control fields in columns, the request in its own table and each executor log in its own row', async () => {
    const repo = new SqliteTaskRepository(file);
    try {
      await repo.insert({ ...task('t1'), inputs: [{ path: '/in', content: 'inline', type: 'FILE' }] }, 'alice');
      const claim = (await repo.claimNext('replica-a', 60_000))!;
      const lease = claim.control.lease!;
      await repo.patch('t1', {
        from: [TesState.INITIALIZING],
        attempt: 1,
        seq: 4,
        lease_token: lease.token,
        ops: [
          { op: 'set_backend_ref', ref: { container: 'c1' } },
          { op: 'set_executor_log', index: 0, fields: { start_time: 's0', stdout: 'hi' } },
        ],
      });
      let row = rawRow('t1');
      expect(row).toMatchObject({ state: 'INITIALIZING', owner: 'alice', attempt: 1, update_seq: 4, lease_holder: 'replica-a', lease_until: lease.until, lease_token: lease.token });
      expect(JSON.parse(row.backend_ref as string)).toEqual({ container: 'c1' });
      // The progress row holds neither the request nor executor logs.
      expect(row.logs).not.toMatch(/inline|alpine|s0/);
      const db = new Database(file, { readonly: true });
      try {
        expect(JSON.parse((db.prepare('SELECT request FROM task_requests').get() as { request: string }).request)).toMatchObject({ inputs: [{ content: 'inline' }] });
        expect(db.prepare('SELECT log_index, executor_index, log FROM task_executor_logs').all()).toEqual([{ log_index: 0, executor_index: 0, log: '{"start_time":"s0","stdout":"hi"}' }]);
      } finally {
        db.close();
      }
      await repo.patch('t1', { from: [TesState.INITIALIZING], to: TesState.COMPLETE, attempt: 1, lease_token: lease.token, ops: [] });
      row = rawRow('t1');
      expect(row).toMatchObject({ state: 'COMPLETE', lease_holder: null, lease_until: 0, lease_token: null });
    } finally {
      await repo.close();
    }
  });

  it('writes the same few pages for an executor\'s update whether the task has 20 executors or 800', async () => {
    // Pages an update writes are the WAL frames its commit appends. A reader holding an old snapshot keeps the WAL
    // from being restarted by a checkpoint, so the WAL file grows by exactly what each commit writes.
    const repo = new SqliteTaskRepository(file);
    const reader = new Database(file, { readonly: true });
    try {
      reader.prepare('BEGIN').run();
      reader.prepare('SELECT count(*) FROM tasks').get();
      const walBytes = () => statSync(`${file}-wal`).size;
      const bytesPerUpdate = async (id: string, executors: number): Promise<number> => {
        await repo.insert({ ...task(id), executors: Array.from({ length: executors }, (_, i) => ({ image: 'alpine', command: ['echo', String(i)], env: { STEP: String(i) } })) }, '');
        const claim = (await repo.claimNext('replica-a', 60_000))!;
        const run = { attempt: 1, seq: 0, leaseToken: claim.control.lease!.token };
        const before = walBytes();
        let updates = 0;
        for (let index = 0; index < executors; index++) {
          for (const update of [
            { kind: 'executor-started' as const, index, startTime: 't' },
            { kind: 'executor-output' as const, index, stdout: `out ${index}\n`, stderr: '' },
            { kind: 'executor-finished' as const, index, endTime: 'e', exitCode: 0, stdout: `out ${index}\n`, stderr: '' },
          ]) {
            run.seq += 1;
            updates += 1;
            expect(await repo.patch(id, patchForUpdate(update, run, 'now'))).toMatchObject({ applied: true });
          }
        }
        const stored = await repo.getUnscoped(id);
        expect(stored?.logs[0].logs).toHaveLength(executors);
        expect(stored?.logs[0].logs[executors - 1]).toEqual({ start_time: 't', end_time: 'e', exit_code: 0, stdout: `out ${executors - 1}\n`, stderr: '' });
        return (walBytes() - before) / updates;
      };
      const few = await bytesPerUpdate('few', 20);
      const many = await bytesPerUpdate('many', 800);
      // Rewriting the task at every update would write about 40 times as much per update for 800 executors.
      expect(many / few).toBeLessThan(1.5);
    } finally {
      reader.close();
      await repo.close();
    }
  });

  it('upgrades a file of schema step 1: started tasks become attempt 1 without a lease, owned by the anonymous caller', async () => {
    // The step-1 schema as released; a file written by that tesp holds tasks in these tables only.
    const old = new Database(file);
    old.exec(MIGRATIONS[0]);
    old.pragma('user_version = 1');
    const running: TaskRecord = { ...task('running', TesState.RUNNING), name: 'old run', logs: [{ logs: [{ start_time: 's' }], outputs: [], system_logs: [], start_time: 's' }] };
    const insert = old.prepare('INSERT INTO tasks (id, state, name, creation_time, version, doc) VALUES (?, ?, ?, ?, ?, ?)');
    insert.run('running', 'RUNNING', 'old run', running.creation_time, 3, JSON.stringify(running));
    const queued: TaskRecord = { ...task('queued'), inputs: [{ path: '/in', content: 'ünï', type: 'FILE' }, { path: '/url', url: 'https://example.org/x', type: 'FILE' }] };
    insert.run('queued', 'QUEUED', null, running.creation_time, 0, JSON.stringify(queued));
    insert.run('done', 'COMPLETE', null, running.creation_time, 4, JSON.stringify(task('done', TesState.COMPLETE)));
    old.prepare('INSERT INTO task_tags (key, task_seq, value) VALUES (?, ?, ?)').run('origin', 1, 'step-1');
    old.close();

    const repo = new SqliteTaskRepository(file);
    try {
      expect(await repo.getUnscoped('running')).toEqual({ ...running, control: { owner: '', attempt: 1, update_seq: 0 } });
      expect((await repo.getUnscoped('queued'))?.control).toEqual({ owner: '', attempt: 0, update_seq: 0 });
      expect((await repo.getUnscoped('done'))?.control).toEqual({ owner: '', attempt: 1, update_seq: 0 });
      expect(await repo.getForView('done', TaskView.MINIMAL, { all: false, owner: 'alice' })).toBeUndefined();
      expect(await repo.getUnscoped('queued')).toMatchObject({ inputs: queued.inputs });
      const basic = (await repo.list({ all: true }, { tags: [], pageSize: 5, fields: 'basic' })).tasks.find((t) => t.id === 'queued');
      expect(basic?.inputs).toEqual([{ path: '/in', type: 'FILE' }, queued.inputs![1]]);
      const raw = new Database(file, { readonly: true });
      try {
        expect(raw.prepare("SELECT content_bytes FROM tasks WHERE id = 'queued'").get()).toEqual({ content_bytes: Buffer.byteLength('ünï') });
      } finally {
        raw.close();
      }
      expect((await repo.findExpiredLeases(Date.now(), 10)).map((t) => t.id)).toEqual(['running']);
      expect((await repo.list({ all: true }, { tags: [{ key: 'origin', value: 'step-1' }], pageSize: 5, fields: 'full' })).tasks).toEqual([running]);
      expect((await repo.takeOver('running', undefined, 'replica-a', 60_000))?.control).toMatchObject({ attempt: 1, lease: { holder: 'replica-a' } });
      expect((await repo.claimNext('replica-a', 60_000))?.id).toBe('queued');
    } finally {
      await repo.close();
    }
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    } finally {
      db.close();
    }
  });
});

describe('SqliteTaskRepository (several processes on one file)', () => {
  // Child processes run JavaScript: the compiled store in dist/, which `npm test` builds first (pretest).
  const sources = path.resolve(__dirname);
  const compiled = path.resolve(__dirname, '../../../dist/persistence/sqlite');
  const worker = path.resolve(__dirname, '../../../test/support/store-claim-worker.js');
  let dir: string;
  let children: ChildProcess[];

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-sqlite-processes-'));
    children = [];
  });

  afterEach(() => {
    // Workers of a failed test may still wait for "go".
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  function assertBuilt(): void {
    for (const source of readdirSync(sources).filter((name) => name.endsWith('.ts') && !name.endsWith('.spec.ts'))) {
      const output = path.join(compiled, source.replace(/\.ts$/, '.js'));
      if (!existsSync(output)) throw new Error(`${output} is missing: build first (npm run build; npm test does it as pretest)`);
      if (statSync(output).mtimeMs < statSync(path.join(sources, source)).mtimeMs) {
        throw new Error(`${output} is older than ${source}: build again (npm run build; npm test does it as pretest)`);
      }
    }
  }

  /** Starts a worker and resolves once it has opened the store; `go` lets it claim, `done` gives what it claimed. */
  function startWorker(file: string, holder: string): Promise<{ go: () => void; done: Promise<{ holder: string; claimed: string[] }> }> {
    const child = spawn(process.execPath, [worker, path.join(compiled, 'sqlite-task.repository.js'), file, holder], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += String(chunk)));
    // 'close' comes after the child exited and its output was read to the end.
    const ended = new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', resolve);
    });
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk) => {
        stdout += String(chunk);
        if (stdout.startsWith('ready\n')) resolve();
      });
      ended.then((code) => reject(new Error(`worker ${holder} ended before it was ready (exit ${code}): ${stderr}`)), reject);
    });
    const done = ended.then((code) => {
      if (code !== 0) throw new Error(`worker ${holder} failed (exit ${code}): ${stderr}`);
      return JSON.parse(stdout.slice('ready\n'.length)) as { holder: string; claimed: string[] };
    });
    done.catch(() => undefined); // Awaited by the test once every worker is started.
    return ready.then(() => ({ go: () => child.stdin.end('go\n'), done }));
  }

  it('hands every task to exactly one of 4 processes claiming at once', async () => {
    assertBuilt();
    const file = path.join(dir, 'tesp.sqlite');
    const ids = Array.from({ length: 200 }, (_, i) => `task-${String(i).padStart(3, '0')}`);
    const repo = new SqliteTaskRepository(file);
    await Promise.all(ids.map((id) => repo.insert(task(id), '')));
    await repo.close();

    const workers = await Promise.all(['p1', 'p2', 'p3', 'p4'].map((holder) => startWorker(file, holder)));
    workers.forEach((w) => w.go());
    const results = await Promise.all(workers.map((w) => w.done));

    const claimed = results.flatMap((r) => r.claimed);
    expect([...claimed].sort()).toEqual(ids);
    for (const { claimed: mine } of results) expect(mine).toEqual([...mine].sort());
    const check = new SqliteTaskRepository(file);
    try {
      for (const { holder, claimed: mine } of results) {
        expect((await check.heldBy(holder)).map((t) => t.id).sort()).toEqual([...mine].sort());
      }
      expect(await check.findByState([TesState.QUEUED], 10)).toEqual([]);
    } finally {
      await check.close();
    }
  });
});
