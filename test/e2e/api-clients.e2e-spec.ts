// The TES API with the bodies real clients send (tes-clients.md §3) and the protocol details they rely on:
// each body is accepted, stored as normalised spec fields, and read back in every view matching the official
// schemas with unknown fields forbidden. Tasks stay QUEUED (long dispatch delay): no Docker engine needed.
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { call as callAt, Reply } from '../support/http-call';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';
import { expectSchema } from '../support/openapi-validator';

const TASKS = '/ga4gh/tes/v1/tasks';

describe('TES API with real client bodies', () => {
  let server: InProcessApp;
  let root: string;
  let host: string;

  const call = (method: string, pathname: string, body?: unknown, headers?: Record<string, string>): Promise<Reply> => callAt(root, method, pathname, body, headers);

  /** Creates the task, then reads it in every view and checks each against the spec. */
  async function roundTrip(body: unknown): Promise<{ id: string; basic: any; full: any }> {
    const created = await call('POST', TASKS, body);
    expect(created).toMatchObject({ status: 200 });
    expectSchema('tesCreateTaskResponse', created.json);
    const id = created.json.id as string;
    expect((await call('GET', `${TASKS}/${id}`)).json).toEqual({ id, state: 'QUEUED' });
    const basic = (await call('GET', `${TASKS}/${id}?view=BASIC`)).json;
    const full = (await call('GET', `/v1/tasks/${id}?view=FULL`)).json;
    expectSchema('tesTask', basic);
    expectSchema('tesTask', full);
    expect(JSON.stringify(full)).not.toMatch(/null/);
    return { id, basic, full };
  }

  beforeAll(async () => {
    host = mkdtempSync(path.join(os.tmpdir(), 'tesp-api-clients-'));
    server = await startInProcessApp({ 'compute.local.max_concurrent_tasks': 0, 'storage.file.allowed_dirs': [host], 'server.cors_origins': ['https://portal.example.org'] });
    root = server.root;
  });

  afterAll(async () => {
    await server?.close();
    rmSync(host, { recursive: true, force: true });
  });

  it('py-tes: file:// inputs and outputs, integer resources', async () => {
    const { full } = await roundTrip({
      name: 'py-tes task',
      inputs: [{ url: `file://${host}/in.txt`, path: '/data/in.txt', type: 'FILE' }],
      outputs: [{ url: `file://${host}/out.txt`, path: '/data/out.txt', type: 'FILE' }],
      resources: { cpu_cores: 1, ram_gb: 1, disk_gb: 2 },
      executors: [{ image: 'alpine', command: ['md5sum', '/data/in.txt'], stdout: '/data/out.txt' }],
      tags: { client: 'py-tes' },
    });
    expect(full.resources).toEqual({ cpu_cores: 1, ram_gb: 1, disk_gb: 2 });
    expect(full.outputs).toEqual([{ url: `file://${host}/out.txt`, path: '/data/out.txt', type: 'FILE' }]);
  });

  it('Nextflow: plain host paths, a glob output with path_prefix, fractional memory', async () => {
    const work = `${host}/work/ab/cdef01`;
    const { full } = await roundTrip({
      name: 'sayHello (1)',
      inputs: [{ url: `${work}/.command.run`, path: `${work}/.command.run` }, { url: `${work}/.command.sh`, path: `${work}/.command.sh` }],
      outputs: [
        { url: `${work}/.command.out`, path: `${work}/.command.out` },
        { url: `${work}/.exitcode`, path: `${work}/.exitcode` },
        { url: work, path: `${work}/*.txt`, path_prefix: work, type: 'FILE' },
      ],
      resources: { cpu_cores: 1, ram_gb: 0.5 },
      executors: [{ image: 'ubuntu:20.04', command: ['/bin/bash', '-ue', `${work}/.command.run`], workdir: work }],
    });
    expect(full.inputs.every((input: any) => input.type === 'FILE')).toBe(true);
    expect(full.outputs[2]).toEqual({ url: work, path: `${work}/*.txt`, path_prefix: work, type: 'FILE' });
    expect(full.resources).toEqual({ cpu_cores: 1, ram_gb: 0.5 });
  });

  it('Snakemake 7: content inputs, empty description, resources {}', async () => {
    const script = '#!/bin/bash\n' + 'echo snakemake\n'.repeat(9000);
    const { basic, full } = await roundTrip({
      name: 'snakejob.hello.1.sh',
      description: '',
      inputs: [
        { path: '/tmp/Snakefile', content: 'rule all:\n  input: "out.txt"\n' },
        { path: '/tmp/run_snakemake.sh', content: script },
        { url: `file://${host}/data/in.txt`, path: '/tmp/data/in.txt' },
      ],
      outputs: [{ url: `file://${host}/results/`, path: '/tmp/results/', type: 'FILE' }],
      resources: {},
      executors: [{ image: 'snakemake/snakemake:v7.21.0', command: ['/bin/bash', '/tmp/run_snakemake.sh'], workdir: '/tmp' }],
    });
    expect(full.description).toBe('');
    expect(full.inputs[1].content).toBe(script);
    expect(basic.inputs.map((input: any) => input.content)).toEqual([undefined, undefined, undefined]);
    expect(full.resources).toEqual({});
  });

  it('Cromwell: DIRECTORY outputs with trailing slashes, null tag and backend-parameter values, unknown keys dropped', async () => {
    const callRoot = `${host}/cromwell-executions/wf/123/call-hello`;
    const { full } = await roundTrip({
      name: 'wf.hello',
      description: 'wf.hello:NA:1',
      inputs: [
        { name: 'hello.script', description: 'wf.hello.script', url: `${callRoot}/execution/script`, path: '/cromwell_root/script', type: 'FILE' },
        { name: 'hello.ref', url: `${host}/refs/`, path: '/cromwell_root/refs/', type: 'DIRECTORY' },
      ],
      outputs: [
        { name: 'rc', url: `${callRoot}/execution/rc`, path: '/cromwell_root/rc', type: 'FILE' },
        { name: 'globDir.0', url: `${callRoot}/execution/globDir.0/`, path: '/cromwell_root/globDir.0/', type: 'DIRECTORY' },
      ],
      resources: { cpu_cores: 1, ram_gb: 2.5, disk_gb: 10.0, preemptible: false, backend_parameters: { internal_path_prefix: '/cromwell_root', docker_user: null } },
      executors: [{ image: 'ubuntu:20.04', command: ['/bin/bash', '/cromwell_root/script'], workdir: '/cromwell_root', stdout: '/cromwell_root/stdout', stderr: '/cromwell_root/stderr' }],
      tags: { workflow_id: '123', parent_workflow_id: null },
    });
    expect(full.tags).toEqual({ workflow_id: '123' });
    expect(full.resources).toEqual({ cpu_cores: 1, ram_gb: 2.5, disk_gb: 10, preemptible: false, backend_parameters: {} });
    expect(full.outputs[1]).toEqual({ name: 'globDir.0', url: `${callRoot}/execution/globDir.0/`, path: '/cromwell_root/globDir.0/', type: 'DIRECTORY' });
    expect(full.logs).toEqual([{ logs: [], outputs: [], system_logs: [expect.stringMatching(/unsupported key\(s\) dropped: internal_path_prefix/)] }]);
  });

  it('pydantic-tes (Pulsar): every unset field an explicit null, three executors sharing a volume', async () => {
    const executor = (command: string[]) => ({ image: 'galaxy/pulsar-pod-staging:0.15', command, workdir: null, stdin: null, stdout: null, stderr: null, env: null, ignore_error: null });
    const { full } = await roundTrip({
      id: null,
      state: null,
      name: 'pulsar-job-42',
      description: null,
      inputs: null,
      outputs: null,
      resources: { cpu_cores: null, preemptible: null, ram_gb: null, disk_gb: null, zones: null, backend_parameters: null, backend_parameters_strict: null },
      executors: [executor(['pulsar-stage-in']), executor(['sh', '-c', 'tool']), executor(['pulsar-stage-out'])],
      volumes: ['/pulsar_staging'],
      tags: null,
      logs: null,
      creation_time: null,
    });
    expect(full).toEqual({
      id: expect.any(String),
      state: 'QUEUED',
      name: 'pulsar-job-42',
      resources: {},
      executors: [
        { image: 'galaxy/pulsar-pod-staging:0.15', command: ['pulsar-stage-in'] },
        { image: 'galaxy/pulsar-pod-staging:0.15', command: ['sh', '-c', 'tool'] },
        { image: 'galaxy/pulsar-pod-staging:0.15', command: ['pulsar-stage-out'] },
      ],
      volumes: ['/pulsar_staging'],
      logs: [],
      creation_time: expect.any(String),
    });
  });

  it('compliance suite: backend_parameters with strict false is 200, strict true is 400', async () => {
    const task = (strict: boolean) => ({
      executors: [{ image: 'alpine', command: ['echo', 'hello'] }],
      resources: { backend_parameters: { INVALID: 'PARAMETER', SHM_SIZE_GB: '1' }, backend_parameters_strict: strict },
    });
    const { full } = await roundTrip(task(false));
    expect(full.resources).toEqual({ backend_parameters: { shm_size_gb: '1' }, backend_parameters_strict: false });
    const refused = await call('POST', TASKS, task(true));
    expect(refused).toMatchObject({ status: 400, json: { msg: expect.stringMatching(/INVALID/), status_code: 400 } });
  });

  describe('protocol details', () => {
    it('service-info matches the spec schema and lists the enabled storage and backend parameters', async () => {
      const { status, json } = await call('GET', '/v1/service-info');
      expect(status).toBe(200);
      expectSchema('tesServiceInfo', json);
      expect(json.storage).toContain(`file://${host}`);
      expect(json.tesResources_backend_parameters).toEqual(['shm_size_gb']);
      expect(Date.parse(json.createdAt)).not.toBeNaN();
      for (const url of [json.organization.url, json.contactUrl, json.documentationUrl]) expect(url).toMatch(/^https?:\/\//);
    });

    it('cancel answers the spec cancel response; an escaped colon is not the cancel route', async () => {
      const { json } = await call('POST', TASKS, { executors: [{ image: 'alpine', command: ['true'] }] });
      const canceled = await call('POST', `${TASKS}/${json.id}:cancel`);
      expect(canceled.status).toBe(200);
      expectSchema('tesCancelTaskResponse', canceled.json);
      expect((await call('POST', `${TASKS}/${json.id}%3Acancel`)).status).toBe(404);
    });

    it('a trailing slash still lists; an empty page_token is the first page; view and state are case-insensitive', async () => {
      const listed = await call('GET', `${TASKS}/?page_size=1&page_token=&view=basic&state=queued`);
      expect(listed.status).toBe(200);
      expectSchema('tesListTasksResponse', listed.json);
      expect(listed.json.tasks).toHaveLength(1);
      expect(listed.json.tasks[0].state).toBe('QUEUED');
    });

    it('pages stay consistent while new tasks arrive: no task twice, none skipped, newcomers only on a fresh listing', async () => {
      const tag = `paging-${Date.now()}`;
      const make = async () => (await call('POST', TASKS, { executors: [{ image: 'alpine', command: ['true'] }], tags: { [tag]: '' } })).json.id as string;
      const original: string[] = [];
      for (let i = 0; i < 5; i++) original.unshift(await make());
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = await call('GET', `${TASKS}?tag_key=${tag}&page_size=2${token ? `&page_token=${token}` : ''}`);
        seen.push(...page.json.tasks.map((t: any) => t.id));
        token = page.json.next_page_token;
        if (pages++ === 0) await Promise.all([make(), make(), make()]);
      } while (token);
      expect(seen).toEqual(original);
      expect(pages).toBe(3);
      expect((await call('GET', `${TASKS}?tag_key=${tag}`)).json.tasks).toHaveLength(8);
    });

    it('a body not sent as application/json is refused with a 400 that says so, storing nothing', async () => {
      const before = (await call('GET', `${TASKS}?page_size=2048`)).json.tasks.length;
      const reply = await call('POST', TASKS, '{"executors": [{"image": "alpine", "command": ["true"]}]}', { 'content-type': 'text/plain' });
      expect(reply).toMatchObject({ status: 400, json: { msg: expect.stringMatching(/^body: required: .*Content-Type: application\/json/), status_code: 400 } });
      expect((await call('GET', `${TASKS}?page_size=2048`)).json.tasks.length).toBe(before);
    });

    it('error responses carry CORS headers too, so browser clients can read them', async () => {
      const origin = { origin: 'https://portal.example.org' };
      const missing = await call('GET', `${TASKS}/missing`, undefined, origin);
      expect(missing.status).toBe(404);
      expect(missing.headers.get('access-control-allow-origin')).toBe('https://portal.example.org');
      const malformed = await call('POST', TASKS, '{"executors": [', origin);
      expect(malformed.status).toBe(400);
      expect(malformed.headers.get('access-control-allow-origin')).toBe('https://portal.example.org');
    });

    it('/docs serves the Swagger UI and its assets over the TES document, resolvable offline', async () => {
      const page = await call('GET', '/docs');
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/text\/html/);
      expect((await call('GET', '/docs/swagger-ui-init.js')).status).toBe(200);
      expect((await call('GET', '/docs/swagger-ui-bundle.js')).status).toBe(200);
      const document = (await call('GET', '/docs-json')).json;
      expect(document.servers).toEqual([{ url: '/ga4gh/tes/v1' }, { url: '/v1' }]);
      expect(document.info.version).toBe('1.1.0');
      const refs = JSON.stringify(document).match(/"\$ref":"[^"]*"/g) ?? [];
      expect(refs.filter((ref) => !ref.startsWith('"$ref":"#/'))).toEqual([]);
      expect(document.components.schemas.tesServiceInfo.allOf[0]).toEqual({ $ref: '#/components/schemas/Service' });
      expect(document.components.schemas.Service.required).toEqual(expect.arrayContaining(['id', 'name', 'type', 'organization', 'version']));
    });
  });
});

describe('TES API body limit', () => {
  let server: InProcessApp;

  beforeAll(async () => {
    // Content as large as the body may be, so the body limit is what refuses.
    server = await startInProcessApp({ 'compute.local.max_concurrent_tasks': 0, 'server.body_limit_mb': 16, 'limits.content_bytes': 32 * 1024 * 1024 });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('takes bodies up to server.body_limit_mb and answers a larger one 413 as JSON, storing nothing', async () => {
    const task = (bytes: number) => ({ inputs: [{ path: '/data/blob', content: 'x'.repeat(bytes) }], executors: [{ image: 'alpine', command: ['true'] }] });
    expect((await callAt(server.root, 'POST', TASKS, task(15 * 1024 * 1024))).status).toBe(200);
    const tooLarge = await callAt(server.root, 'POST', TASKS, task(17 * 1024 * 1024));
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.headers.get('content-type')).toMatch(/^application\/json/);
    expect(tooLarge.json).toEqual({ msg: expect.stringMatching(/body_limit_mb/), status_code: 413 });
    expect((await callAt(server.root, 'GET', TASKS)).json.tasks).toHaveLength(1);
  });
});
