// `tesp runner` as a real process, checked against the shapes of Pulsar 0.15's REST API (pulsar-protocol reference
// §1-8): what Galaxy's client and tesp's pulsar backend rely on. Pulsar's own client check,
// `python3 -m pulsar.client.test.check --url http://127.0.0.1:PORT/ --private_token TOKEN`, is the compatibility
// target beyond these tests (it needs Python with pulsar installed).
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { startHttpFileServer, HttpFileServer } from '../support/http-file-server';
import { groupAlive, RunnerProcess, sleep, TOKEN } from './runner-process';

const FINISHED_KEYS = [
  'complete', 'job_directory', 'job_directory_contents', 'job_id', 'job_stderr', 'job_stdout', 'metadata_directory',
  'metadata_directory_contents', 'outputs_directory_contents', 'pulsar_version', 'realized_dynamic_file_sources',
  'returncode', 'status', 'stderr', 'stdout', 'system_properties', 'working_directory', 'working_directory_contents',
];

describe('tesp runner: the Pulsar REST API', () => {
  let runner: RunnerProcess;

  beforeAll(async () => {
    runner = new RunnerProcess(RunnerProcess.tempDataDir());
    await runner.start();
  });

  afterAll(async () => {
    await runner.stop();
    runner.cleanup();
  });

  describe('transport', () => {
    it('answers healthz with its version as JSON labelled text/html, also under managers/_default_', async () => {
      for (const route of ['/healthz', '/managers/_default_/healthz']) {
        const answer = await runner.call('GET', route);
        expect(answer.status).toBe(200);
        expect(answer.contentType).toBe('text/html; charset=UTF-8');
        expect(answer.json()).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
      }
    });

    it('requires the private_token on every route, healthz included (401 text/plain)', async () => {
      for (const token of [null, 'wrong', `${TOKEN}x`, '']) {
        for (const [method, route] of [['GET', '/healthz'], ['GET', '/jobs/any/status'], ['POST', '/jobs?job_id=tok'], ['GET', '/tesp/capabilities']]) {
          const answer = await runner.call(method, route, { token });
          expect([route, answer.status]).toEqual([route, 401]);
          expect(answer.contentType).toMatch(/^text\/plain/);
        }
      }
      expect(existsSync(runner.jobDir('tok'))).toBe(false);
    });

    it('answers 404 for unknown paths and 500 for unknown managers (healthz included)', async () => {
      expect((await runner.call('GET', '/nothing')).status).toBe(404);
      expect((await runner.call('GET', '/jobs/a/b/c/d')).status).toBe(404);
      expect((await runner.call('GET', '/managers/hpc/healthz')).status).toBe(500);
      expect((await runner.call('GET', '/managers/hpc/jobs/x/status')).status).toBe(500);
    });

    it('reports its capabilities', async () => {
      const answer = await runner.call('GET', '/managers/_default_/tesp/capabilities');
      expect(answer.contentType).toBe('text/html; charset=UTF-8');
      expect(answer.json()).toEqual({ tesp_runner: expect.any(String), runtime: 'process', staging_schemes: expect.arrayContaining(['file', 'http', 'https']), active_jobs: expect.any(Number), queued_jobs: 0, max_concurrent_jobs: 4 });
    });

    it('reads parameters from the query string only: a form body is ignored', async () => {
      const answer = await runner.call('POST', '/jobs', { body: 'job_id=formjob', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      expect(answer.status).toBe(400);
      expect(existsSync(runner.jobDir('formjob'))).toBe(false);
      const ignored = await runner.call('POST', '/jobs', { query: { job_id: 'extra', tool_id: 't', use_metadata: 'true', token_endpoint: 'x' } });
      expect(ignored.status).toBe(200);
      expect(ignored.json()).toMatchObject({ job_id: 'extra', tool_id: 't' });
    });
  });

  describe('job ids and file names', () => {
    it('refuses job ids that leave the staging directory (400) and creates nothing outside it', async () => {
      const before = readdirSync(runner.dataDir).sort();
      const beforeRunner = readdirSync(path.dirname(runner.stagingDir)).sort();
      for (const id of ['..', '../escape', 'a/b', '.']) {
        expect([id, (await runner.call('POST', '/jobs', { query: { job_id: id } })).status]).toEqual([id, 400]);
      }
      for (const raw of ['..', '%2E%2E', 'a%2Fb', '..%2Fescape']) {
        for (const [method, suffix] of [['GET', '/status'], ['POST', '/submit?command_line=touch%20x'], ['PUT', '/cancel'], ['DELETE', ''], ['POST', '/files?name=x&type=input']]) {
          const answer = await runner.call(method, `/jobs/${raw}${suffix}`, { body: method === 'POST' ? 'x' : undefined });
          expect([raw, method, suffix, answer.status]).toEqual([raw, method, suffix, 400]);
        }
      }
      expect(readdirSync(runner.dataDir).sort()).toEqual(before);
      expect(readdirSync(path.dirname(runner.stagingDir)).sort()).toEqual(beforeRunner);
      expect(existsSync(path.join(runner.stagingDir, 'escape'))).toBe(false);
    });

    it('sets a job up idempotently with the Pulsar directories', async () => {
      const first = await runner.call('POST', '/jobs', { query: { job_id: 'setup1' } });
      const second = await runner.call('POST', '/managers/_default_/jobs', { query: { job_id: 'setup1' } });
      expect(first.contentType).toBe('text/html; charset=UTF-8');
      expect(second.json()).toEqual(first.json());
      const dir = runner.jobDir('setup1');
      expect(first.json()).toMatchObject({
        job_id: 'setup1', job_directory: dir, working_directory: `${dir}/working`, inputs_directory: `${dir}/inputs`,
        tools_directory: `${dir}/tool_files`, unstructured_files_directory: `${dir}/unstructured`, path_separator: '/',
        system_properties: { separator: '/', tesp_runner: { runtime: 'process', max_concurrent_jobs: 4 } },
      });
      expect(readdirSync(dir).sort()).toEqual(['configs', 'inputs', 'metadata', 'outputs', 'tool_files', 'unstructured', 'working']);
    });

    it('places uploads by type, nested or by basename as Pulsar does, with and without a Content-Length', async () => {
      await runner.call('POST', '/jobs', { query: { job_id: 'up1' } });
      const dir = runner.jobDir('up1');
      const cases: Array<[string, string, string]> = [
        ['input', 'a/b/c.txt', 'inputs/a/b/c.txt'],
        ['unstructured', 'h/bwa/human.fa', 'unstructured/h/bwa/human.fa'],
        ['config', 'a/c.txt', 'configs/c.txt'],
        ['tool', 'sub/script.py', 'tool_files/sub/script.py'],
        ['workdir', 'a/b.txt', 'working/b.txt'],
        ['metadata', 'm/x', 'metadata/m/x'],
        ['jobdir', 'q/jobfile', 'jobfile'],
      ];
      for (const [type, name, where] of cases) {
        const answer = await runner.call('POST', '/jobs/up1/files', { query: { name, type }, body: `content of ${name}`, chunked: type === 'input' });
        expect([type, answer.status]).toEqual([type, 200]);
        expect(answer.json()).toEqual({ path: path.join(dir, where) });
        expect(readFileSync(path.join(dir, where), 'utf8')).toBe(`content of ${name}`);
      }
      const byPath = await runner.call('GET', '/jobs/up1/files/path', { query: { name: 'x/y', type: 'output_workdir' } });
      expect(byPath.json()).toEqual({ path: path.join(dir, 'working/x/y') });
    });

    it('refuses names that leave their directory and never writes or reads through a link out of the job', async () => {
      await runner.call('POST', '/jobs', { query: { job_id: 'trav1' } });
      const dir = runner.jobDir('trav1');
      for (const name of ['../escape.txt', 'a/../../escape.txt', '/etc/passwd', '..']) {
        const answer = await runner.call('POST', '/jobs/trav1/files', { query: { name, type: 'input' }, body: 'x' });
        expect([name, answer.status]).toEqual([name, 400]);
      }
      expect((await runner.call('POST', '/jobs/trav1/files', { query: { name: 'x', type: 'nonsense' }, body: 'x' })).status).toBe(400);
      expect(existsSync(path.join(dir, 'escape.txt'))).toBe(false);
      // Links a job could make: a directory and a file pointing outside.
      const outside = path.join(runner.dataDir, 'outside');
      mkdirSync(outside, { recursive: true });
      writeFileSync(path.join(outside, 'secret'), 'secret');
      symlinkSync(outside, path.join(dir, 'inputs', 'link'));
      symlinkSync(path.join(outside, 'secret'), path.join(dir, 'outputs', 'secret'));
      symlinkSync(path.join(dir, 'working'), path.join(dir, 'outputs', 'inside'));
      writeFileSync(path.join(dir, 'working', 'w.txt'), 'inside the job');
      expect((await runner.call('POST', '/jobs/trav1/files', { query: { name: 'link/new', type: 'input' }, body: 'x' })).status).toBe(400);
      expect((await runner.call('POST', '/jobs/trav1/files', { query: { name: 'secret', type: 'output' }, body: 'x' })).status).toBe(400);
      expect(readdirSync(outside)).toEqual(['secret']);
      expect(readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('secret');
      expect((await runner.call('GET', '/jobs/trav1/files', { query: { name: 'secret', type: 'output' } })).status).toBe(500);
      expect((await runner.call('GET', '/jobs/trav1/files', { query: { name: '../inputs/x', type: 'output' } })).status).toBe(400);
      const inside = await runner.call('GET', '/jobs/trav1/files', { query: { name: 'inside/w.txt' } });
      expect([inside.status, inside.text]).toEqual([200, 'inside the job']);
    });
  });

  describe('a job', () => {
    it('answers lost (200, complete "true", returncode null) for an unknown job; cancel and clean answer OK', async () => {
      const answer = await runner.call('GET', '/jobs/nosuchjob/status');
      expect(answer.status).toBe(200);
      expect(answer.contentType).toBe('text/html; charset=UTF-8');
      expect(answer.json()).toMatchObject({ job_id: 'nosuchjob', complete: 'true', status: 'lost', returncode: null });
      expect((await runner.call('PUT', '/jobs/nosuchjob/cancel')).text).toBe('OK');
      expect((await runner.call('DELETE', '/jobs/nosuchjob')).text).toBe('OK');
    });

    it('reads preprocessing while set up but not submitted', async () => {
      await runner.call('POST', '/jobs', { query: { job_id: 'idle1' } });
      expect((await runner.call('POST', '/jobs/idle1/status')).json()).toEqual({ complete: 'false', status: 'preprocessing', job_id: 'idle1' });
    });

    it('runs a command line in working/ with its env, and reports its exit code, streams and files', async () => {
      await runner.call('POST', '/jobs', { query: { job_id: 'run1' } });
      await runner.call('POST', '/jobs/run1/files', { query: { name: 'in.txt', type: 'input' }, body: 'from input\n' });
      const commandLine = 'cat ../inputs/in.txt > ../outputs/out.txt; echo to-stdout; echo to-stderr 1>&2; echo "FOO=$FOO"; echo "marker=${TESP_RUNNER_JOB:+set}"; exit 3';
      const submit = await runner.call('POST', '/jobs/run1/submit', {
        query: { command_line: commandLine, env: JSON.stringify([{ name: 'FOO', value: 'a "b" $HOME `x` \\n \'q\'' }]), remote_staging: '{}', setup_params: '{}' },
      });
      expect([submit.status, submit.text, submit.contentType]).toEqual([200, 'OK', 'text/html; charset=UTF-8']);
      const status = await runner.waitDone('run1');
      expect(Object.keys(status).sort()).toEqual(FINISHED_KEYS);
      expect(status).toMatchObject({
        job_id: 'run1', complete: 'true', status: 'complete', returncode: 3, stdout: '', stderr: '',
        job_stdout: 'to-stdout\nFOO=a "b" $HOME `x` \\n \'q\'\nmarker=set\n', job_stderr: 'to-stderr\n',
        outputs_directory_contents: ['out.txt'], realized_dynamic_file_sources: [],
        system_properties: { separator: '/' },
      });
      expect(status.job_directory_contents).toEqual(expect.arrayContaining(['command.sh', 'return_code', 'working', 'outputs', 'metadata']));
      expect(status.metadata_directory_contents).toEqual(expect.arrayContaining(['job_stdout', 'job_stderr']));

      const out = await runner.call('GET', '/jobs/run1/files', { query: { name: 'out.txt', type: 'output' } });
      expect([out.status, out.text]).toEqual([200, 'from input\n']);
      const nonsenseType = await runner.call('GET', '/jobs/run1/files', { query: { name: 'out.txt', type: 'input' } });
      expect(nonsenseType.text).toBe('from input\n'); // every other type reads outputs/, as Pulsar
      const tail = await runner.call('GET', '/jobs/run1/files', { query: { name: 'job_stdout', type: 'output_metadata' }, headers: { range: 'bytes=-11' } });
      expect([tail.status, tail.text, tail.headers['content-range']]).toEqual([206, 'marker=set\n', `bytes ${status.job_stdout.length - 11}-${status.job_stdout.length - 1}/${status.job_stdout.length}`]);
      const from = await runner.call('GET', '/jobs/run1/files', { query: { name: 'out.txt' }, headers: { range: 'bytes=5-' } });
      expect([from.status, from.text]).toEqual([206, 'input\n']);
      const beyond = await runner.call('GET', '/jobs/run1/files', { query: { name: 'out.txt' }, headers: { range: 'bytes=999-' } });
      expect(beyond.status).toBe(416);
      expect((await runner.call('GET', '/jobs/run1/files', { query: { name: 'missing.txt' } })).status).toBe(500);
    });

    it('ignores a repeated submit', async () => {
      await runner.run('rep1', 'echo first >> ../outputs/runs');
      await runner.waitDone('rep1');
      const again = await runner.call('POST', '/jobs/rep1/submit', { query: { command_line: 'echo second >> ../outputs/runs; exit 9' } });
      expect(again.text).toBe('OK');
      await sleep(500);
      const status = (await runner.call('GET', '/jobs/rep1/status')).json();
      expect([status.status, status.returncode]).toEqual(['complete', 0]);
      expect(readFileSync(path.join(runner.jobDir('rep1'), 'outputs', 'runs'), 'utf8')).toBe('first\n');
    });

    it('sets up during submit when setup_params is given and replaces __PULSAR_JOBS_DIRECTORY__', async () => {
      const submit = await runner.call('POST', '/jobs/one1/submit', { query: { command_line: 'echo __PULSAR_JOBS_DIRECTORY__', setup_params: JSON.stringify({ job_id: 'one1', tool_id: 'tes', tool_version: '1' }) } });
      expect(submit.text).toBe('OK');
      expect((await runner.waitDone('one1')).job_stdout).toBe(`${runner.stagingDir}\n`);
      expect((await runner.call('POST', '/jobs/never-set-up/submit', { query: { command_line: 'true' } })).status).toBe(500);
    });

    it('refuses env items that are not shell variable names', async () => {
      await runner.call('POST', '/jobs', { query: { job_id: 'env1' } });
      const answer = await runner.call('POST', '/jobs/env1/submit', { query: { command_line: 'true', env: JSON.stringify([{ name: 'A;rm', value: 'x' }]) } });
      expect(answer.status).toBe(400);
    });

    it('cancels a running job: status cancelled, its process group gone within 5 s', async () => {
      await runner.run('cancel1', 'sleep 600 & sleep 600');
      await runner.waitStatus('cancel1', 'running');
      while (!existsSync(path.join(runner.jobDir('cancel1'), 'pid'))) await sleep(20);
      const pid = Number(readFileSync(path.join(runner.jobDir('cancel1'), 'pid'), 'utf8'));
      expect(groupAlive(pid)).toBe(true);
      const started = Date.now();
      expect((await runner.call('PUT', '/jobs/cancel1/cancel')).text).toBe('OK');
      expect((await runner.call('GET', '/jobs/cancel1/status')).json()).toMatchObject({ complete: 'true', status: 'cancelled' });
      while (groupAlive(pid) && Date.now() - started < 5000) await sleep(50);
      expect(groupAlive(pid)).toBe(false);
      await sleep(300);
      expect((await runner.call('GET', '/jobs/cancel1/status')).json().status).toBe('cancelled');
      expect(readFileSync(path.join(runner.jobDir('cancel1'), 'final_status'), 'utf8')).toBe('cancelled');
    });

    it('cleans a job: its directory is removed and it reads lost', async () => {
      await runner.run('clean1', 'echo x > ../outputs/x');
      await runner.waitDone('clean1');
      expect((await runner.call('DELETE', '/jobs/clean1')).text).toBe('OK');
      expect(existsSync(runner.jobDir('clean1'))).toBe(false);
      expect((await runner.call('GET', '/jobs/clean1/status')).json()).toMatchObject({ complete: 'true', status: 'lost', returncode: null });
    });

    it('cleans a running job: stopped first, then removed', async () => {
      await runner.run('clean2', 'sleep 600');
      await runner.waitStatus('clean2', 'running');
      while (!existsSync(path.join(runner.jobDir('clean2'), 'pid'))) await sleep(20);
      const pid = Number(readFileSync(path.join(runner.jobDir('clean2'), 'pid'), 'utf8'));
      expect((await runner.call('DELETE', '/jobs/clean2')).text).toBe('OK');
      expect(groupAlive(pid)).toBe(false);
      expect(existsSync(runner.jobDir('clean2'))).toBe(false);
    });
  });
});

describe('tesp runner: restart', () => {
  it('finds its jobs again after a SIGKILL: a running job ends complete, a queued one runs', async () => {
    const runner = new RunnerProcess(RunnerProcess.tempDataDir(), { TESP_RUNNER__MAX_CONCURRENT_JOBS: '1' });
    try {
      await runner.start();
      await runner.run('long1', 'sleep 3; echo done > ../outputs/x');
      await runner.run('next1', 'echo next > ../outputs/y');
      await runner.waitStatus('long1', 'running');
      expect((await runner.call('GET', '/jobs/next1/status')).json().status).toBe('queued');
      expect((await runner.call('GET', '/tesp/capabilities')).json()).toMatchObject({ active_jobs: 1, queued_jobs: 1, max_concurrent_jobs: 1 });
      await runner.stop('SIGKILL');
      await runner.start();
      expect((await runner.call('GET', '/jobs/long1/status')).json().status).toBe('running');
      const long = await runner.waitDone('long1');
      expect([long.status, long.returncode]).toEqual(['complete', 0]);
      expect(readFileSync(path.join(runner.jobDir('long1'), 'outputs', 'x'), 'utf8')).toBe('done\n');
      const next = await runner.waitDone('next1');
      expect([next.status, next.returncode]).toEqual(['complete', 0]);
      expect(readFileSync(path.join(runner.jobDir('next1'), 'outputs', 'y'), 'utf8')).toBe('next\n');
    } finally {
      await runner.stop();
      runner.cleanup();
    }
  });

  it('marks a job failed whose process vanished without an exit code while the runner was down', async () => {
    const runner = new RunnerProcess(RunnerProcess.tempDataDir());
    try {
      await runner.start();
      await runner.run('vanish1', 'sleep 600');
      await runner.waitStatus('vanish1', 'running');
      while (!existsSync(path.join(runner.jobDir('vanish1'), 'pid'))) await sleep(20);
      const pid = Number(readFileSync(path.join(runner.jobDir('vanish1'), 'pid'), 'utf8'));
      await runner.stop('SIGKILL');
      process.kill(-pid, 'SIGKILL'); // the job dies with the runner away: nobody records its code
      while (groupAlive(pid)) await sleep(20);
      await runner.start();
      expect((await runner.call('GET', '/jobs/vanish1/status')).json()).toMatchObject({ status: 'failed', returncode: null });
    } finally {
      await runner.stop();
      runner.cleanup();
    }
  });
});

describe('tesp runner: direct staging', () => {
  let files: HttpFileServer;
  let runner: RunnerProcess;

  beforeAll(async () => {
    const dataDir = RunnerProcess.tempDataDir();
    const served = path.join(dataDir, 'served');
    mkdirSync(served, { recursive: true });
    writeFileSync(path.join(served, 'in.txt'), 'hello staging\n');
    files = await startHttpFileServer(served);
    runner = new RunnerProcess(dataDir, { TESP_STORAGE__HTTP__RETRIES: '0' });
    await runner.start();
  });

  afterAll(async () => {
    await runner.stop();
    await files.close();
    runner.cleanup();
  });

  const request = (input: string) => JSON.stringify({
    taskId: 'task-1',
    inputs: [{ index: 0, url: `${files.base}/${input}`, type: 'FILE', path: '/data/in.txt' }],
    outputs: [{ index: 0, url: `${files.base}/results/out.txt`, type: 'FILE', path: '/out/out.txt' }],
    mounts: [{ path: '/out', readOnly: false, type: 'DIRECTORY' }, { path: '/data/in.txt', readOnly: true, type: 'FILE' }],
  });

  it('stages the inputs before the command and the outputs after it', async () => {
    await runner.call('POST', '/jobs', { query: { job_id: 'stage1' } });
    await runner.call('POST', '/jobs/stage1/files', { query: { name: 'tesp/staging.json', type: 'input' }, body: request('in.txt') });
    await runner.call('POST', '/jobs/stage1/submit', { query: { command_line: 'mkdir -p root/out && tr a-z A-Z < ../inputs/root/data/in.txt > root/out/out.txt' } });
    const status = await runner.waitDone('stage1');
    expect([status.status, status.returncode]).toEqual(['complete', 0]);
    expect(readFileSync(path.join(files.root, 'results', 'out.txt'), 'utf8')).toBe('HELLO STAGING\n');
    const result = await runner.call('GET', '/jobs/stage1/files', { query: { name: 'tesp/staging-result.json', type: 'output_metadata' } });
    expect(result.json()).toMatchObject({ outputs: [{ url: `${files.base}/results/out.txt`, path: '/out/out.txt', size_bytes: '14' }], checksums: { 'sha256:/out/out.txt': expect.stringMatching(/^[0-9a-f]{64}$/) } });
  });

  it('fails a job whose inputs cannot be staged, with the reason, and never runs its command', async () => {
    await runner.call('POST', '/jobs', { query: { job_id: 'stage2' } });
    await runner.call('POST', '/jobs/stage2/files', { query: { name: 'tesp/staging.json', type: 'input' }, body: request('missing.txt') });
    await runner.call('POST', '/jobs/stage2/submit', { query: { command_line: 'touch ../outputs/ran' } });
    const status = await runner.waitDone('stage2');
    expect(status.status).toBe('failed');
    expect(existsSync(path.join(runner.jobDir('stage2'), 'outputs', 'ran'))).toBe(false);
    const result = await runner.call('GET', '/jobs/stage2/files', { query: { name: 'tesp/staging-result.json', type: 'output_metadata' } });
    expect(result.json().stage_in_error).toMatch(/inputs\[0\].*missing\.txt/);
  });

  it('fails a job whose outputs cannot be staged, with the reason', async () => {
    await runner.call('POST', '/jobs', { query: { job_id: 'stage3' } });
    await runner.call('POST', '/jobs/stage3/files', { query: { name: 'tesp/staging.json', type: 'input' }, body: request('in.txt') });
    await runner.call('POST', '/jobs/stage3/submit', { query: { command_line: 'true' } });
    const status = await runner.waitDone('stage3');
    expect([status.status, status.returncode]).toEqual(['failed', 0]);
    const result = await runner.call('GET', '/jobs/stage3/files', { query: { name: 'tesp/staging-result.json', type: 'output_metadata' } });
    expect(result.json().stage_out_error).toMatch(/outputs\[0\]/);
  });
});
