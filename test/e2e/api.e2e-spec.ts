// The TES API over HTTP, in-process with the real modules and SQLite. Tasks stay QUEUED here (a long dispatch
// delay), so these tests need no Docker engine; running tasks is covered by task-run.e2e-spec.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { call as callAt, Reply } from '../support/http-call';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';
import { expectSchema } from '../support/openapi-validator';

describe('TES API over HTTP', () => {
  let server: InProcessApp;
  let root: string;
  let allowed: string;

  const call = (method: string, pathname: string, body?: unknown, headers?: Record<string, string>): Promise<Reply> => callAt(root, method, pathname, body, headers);

  const create = async (task: unknown) => {
    const reply = await call('POST', '/ga4gh/tes/v1/tasks', task);
    expect(reply.status).toBe(200);
    return reply.json.id as string;
  };

  const countTasks = async () => (await call('GET', '/ga4gh/tes/v1/tasks?page_size=2048')).json.tasks.length as number;

  const simple = (extra: Record<string, unknown> = {}) => ({ executors: [{ image: 'alpine:latest', command: ['echo', 'hi'] }], ...extra });

  beforeAll(async () => {
    allowed = mkdtempSync(path.join(os.tmpdir(), 'tesp-api-files-'));
    server = await startInProcessApp({ 'compute.local.max_concurrent_tasks': 0, 'storage.file.allowed_dirs': [allowed], 'server.cors_origins': ['https://portal.example.org'] });
    root = server.root;
  });

  afterAll(async () => {
    await server?.close();
    rmSync(allowed, { recursive: true, force: true });
  });

  describe('service-info', () => {
    it('describes the service with exactly the spec fields under both prefixes', async () => {
      for (const prefix of ['/ga4gh/tes/v1', '/v1']) {
        const { status, json, headers } = await call('GET', `${prefix}/service-info`);
        expect(status).toBe(200);
        expect(headers.get('content-type')).toMatch(/^application\/json/);
        expect(Object.keys(json).sort()).toEqual(
          ['contactUrl', 'createdAt', 'description', 'documentationUrl', 'environment', 'id', 'name', 'organization', 'storage', 'tesResources_backend_parameters', 'type', 'updatedAt', 'version'].sort(),
        );
        expect(json.type).toEqual({ group: 'org.ga4gh', artifact: 'tes', version: '1.1.0' });
        expect(json.organization.url).toMatch(/^https:\/\//);
        expect(json.storage).toEqual([pathToFileURL(allowed).toString(), 'http://', 'https://', 'ftp://']);
        expect(json.tesResources_backend_parameters).toEqual(['shm_size_gb']);
      }
    });
  });

  describe('create and get', () => {
    it('answers 200 with the id, durable at once, MINIMAL by default', async () => {
      const reply = await call('POST', '/ga4gh/tes/v1/tasks', simple({ name: 'first' }));
      expect(reply.status).toBe(200);
      expect(Object.keys(reply.json)).toEqual(['id']);
      expect(reply.json.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expectSchema('tesCreateTaskResponse', reply.json);
      const got = await call('GET', `/ga4gh/tes/v1/tasks/${reply.json.id}`);
      expect(got.json).toEqual({ id: reply.json.id, state: 'QUEUED' });
      expect((await call('GET', `/v1/tasks/${reply.json.id}?view=minimal`)).json).toEqual(got.json);
    });

    it('shows BASIC without content, stdout, stderr and system_logs, and FULL with them', async () => {
      const id = await create({
        name: 'views',
        inputs: [{ path: '/data/in', content: 'secret-content' }, { path: '/data/web', url: 'https://example.org/x' }],
        outputs: [{ path: '/out/x', url: pathToFileURL(path.join(allowed, 'x')).toString() }],
        resources: { cpu_cores: 1.5, ram_gb: 0.5, backend_parameters: { Unknown_Key: 'v', SHM_SIZE_GB: '1' } },
        executors: [{ image: 'alpine:latest', command: ['echo', 'hi'] }],
        tags: { project: 'p' },
      });
      const basic = (await call('GET', `/ga4gh/tes/v1/tasks/${id}?view=BASIC`)).json;
      const full = (await call('GET', `/ga4gh/tes/v1/tasks/${id}?view=FULL`)).json;
      expectSchema('tesTask', basic);
      expectSchema('tesTask', full);
      expect(basic.inputs[0]).toEqual({ path: '/data/in', type: 'FILE' });
      expect(full.inputs[0]).toEqual({ path: '/data/in', type: 'FILE', content: 'secret-content' });
      expect(full.inputs[1]).toEqual({ path: '/data/web', url: 'https://example.org/x', type: 'FILE' });
      expect(full.resources).toEqual({ cpu_cores: 2, ram_gb: 0.5, backend_parameters: { shm_size_gb: '1' } });
      expect(basic.logs[0].system_logs).toBeUndefined();
      expect(full.logs[0].system_logs).toEqual([expect.stringMatching(/unsupported key\(s\) dropped: Unknown_Key/)]);
      expect(full.logs[0]).toMatchObject({ logs: [], outputs: [] });
      expect(full.creation_time).toEqual(expect.any(String));
    });

    it('tags each view with an ETag and answers If-None-Match 304 until the task changes', async () => {
      const id = await create(simple());
      const url = `/ga4gh/tes/v1/tasks/${id}`;
      const first = await call('GET', url);
      const etag = first.headers.get('etag')!;
      expect(etag).toMatch(/^"[\w-]+"$/);
      expect(first.headers.get('cache-control')).toBe('no-cache');
      expect((await call('GET', url)).headers.get('etag')).toBe(etag);
      const unchanged = await call('GET', url, undefined, { 'if-none-match': etag });
      expect(unchanged.status).toBe(304);
      expect(unchanged.text).toBe('');
      expect(unchanged.headers.get('etag')).toBe(etag);
      // Each view has its own tag; the alias prefix serves the same bytes, so the same tag.
      const basic = await call('GET', `${url}?view=BASIC`, undefined, { 'if-none-match': etag });
      expect(basic.status).toBe(200);
      expectSchema('tesTask', basic.json);
      expect((await call('GET', `/v1/tasks/${id}`)).headers.get('etag')).toBe(etag);
      expect((await call('POST', `${url}:cancel`)).status).toBe(200);
      const changed = await call('GET', url, undefined, { 'if-none-match': etag });
      expect(changed.status).toBe(200);
      expect(changed.json).toEqual({ id, state: 'CANCELED' });
      expect(changed.headers.get('etag')).not.toBe(etag);
    });

    it('is lenient: nulls, unknown fields and read-only fields are ignored, type defaults to FILE', async () => {
      const id = await create({
        id: 'client-chosen',
        state: 'COMPLETE',
        logs: [{ logs: [] }],
        creation_time: '2000-01-01T00:00:00Z',
        name: null,
        description: null,
        inputs: [{ path: '/data/a', url: 'https://example.org/a', type: null, name: null, streamable: null }],
        outputs: null,
        resources: { cpu_cores: null, ram_gb: null, preemptible: null, backend_parameters: null },
        executors: [{ image: 'alpine:latest', command: ['true'], workdir: null, env: { A: 'b', NULLED: null }, stdin: null, ignore_error: null, surprise: 1 }],
        volumes: null,
        tags: { parent_workflow_id: null, run: 'r1' },
        future_field: { x: 1 },
      });
      expect(id).not.toBe('client-chosen');
      const full = (await call('GET', `/ga4gh/tes/v1/tasks/${id}?view=FULL`)).json;
      expectSchema('tesTask', full);
      expect(full.state).toBe('QUEUED');
      expect(full.creation_time).not.toBe('2000-01-01T00:00:00Z');
      expect(full.inputs).toEqual([{ path: '/data/a', url: 'https://example.org/a', type: 'FILE' }]);
      expect(full.executors).toEqual([{ image: 'alpine:latest', command: ['true'], env: { A: 'b' } }]);
      expect(full.tags).toEqual({ run: 'r1' });
      expect(full.logs ?? []).toEqual([]);
    });

    it('accepts a 200 KiB content input; a content beyond limits.content_bytes answers 400 naming the limit', async () => {
      await create(simple({ inputs: [{ path: '/data/big', content: 'y'.repeat(200 * 1024) }] }));
      const huge = await call('POST', '/ga4gh/tes/v1/tasks', simple({ inputs: [{ path: '/data/huge', content: 'z'.repeat(2 * 1024 * 1024) }] }));
      expect(huge.json).toEqual({ msg: 'inputs[0].content: 2097152 bytes or more, more than limits.content_bytes (1048576)', status_code: 400 });
    });

    // The official compliance suite's bodies (create_task_inputs, create_task_outputs, create_task_s3): s3:// is a
    // scheme tesp knows; a server without S3 settings accepts the task, which then ends SYSTEM_ERROR at staging.
    it.each([
      ['inputs', { name: 'CompTest', description: 'CompTest', executors: [{ image: 'alpine', command: ['echo', 'hello'] }], inputs: [{ url: 's3://my-object-store/file-1', path: '/data/file1', type: 'FILE' }] }],
      ['outputs', { name: 'CompTest', description: 'CompTest', executors: [{ image: 'alpine', command: ['echo', 'hello'] }], outputs: [{ url: 's3://my-object-store/outfile-1', path: '/data/outfile', type: 'FILE' }] }],
      ['s3 cat', { description: 'S3 cat test', inputs: [{ url: 's3://compliance-testing/textfile.txt', path: '/compliance/tes/volumes/input', type: 'FILE' }], executors: [{ image: 'alpine', command: ['cat', '/compliance/tes/volumes/input'] }] }],
    ])('accepts the compliance suite create body with s3:// %s on the default settings', async (_label, body) => {
      const reply = await call('POST', '/ga4gh/tes/v1/tasks', body);
      expect(reply.status).toBe(200);
      expectSchema('tesCreateTaskResponse', reply.json);
    });

    it('answers 404 JSON for an unknown task and an unknown route', async () => {
      for (const [method, pathname] of [
        ['GET', '/ga4gh/tes/v1/tasks/no-such-task'],
        ['POST', '/ga4gh/tes/v1/tasks/no-such-task:cancel'],
        ['GET', '/ga4gh/tes/v1/nothing-here'],
        ['GET', '/v2/tasks'],
      ]) {
        const reply = await call(method, pathname);
        expect(reply.status).toBe(404);
        expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
        expect(reply.json).toEqual({ msg: expect.any(String), status_code: 404 });
      }
    });
  });

  describe('bad input', () => {
    const bodies: Array<[string, unknown, RegExp]> = [
      ['malformed JSON', '{"executors": [', /request body is not valid JSON/],
      ['an array body', [], /body: must be a JSON object/],
      ['no executors', { name: 'x' }, /executors: required/],
      ['executors not an array', { executors: 'echo' }, /executors: must be an array/],
      ['an empty task', { executors: [] }, /executors: must not be empty/],
      ['no image', { executors: [{ command: ['echo'] }] }, /executors\[0\]\.image: required/],
      ['no command', { executors: [{ image: 'alpine' }] }, /executors\[0\]\.command: required/],
      ['command as a string', { executors: [{ image: 'alpine', command: 'echo hi' }] }, /executors\[0\]\.command: must be an array/],
      ['command with a number', { executors: [{ image: 'alpine', command: ['echo', 1] }] }, /executors\[0\]\.command\[1\]: must be a string/],
      ['name of the wrong type', simple({ name: 5 }), /^name: must be a string/],
      ['a relative input path', simple({ inputs: [{ path: 'data/x', content: 'x' }] }), /inputs\[0\]\.path: must be an absolute path/],
      ['a .. output path', simple({ outputs: [{ path: '/out/../etc/x', url: 'https://example.org/x' }] }), /outputs\[0\]\.path: must not contain "\.\."/],
      ['a relative workdir', { executors: [{ image: 'alpine', command: ['true'], workdir: 'tmp' }] }, /executors\[0\]\.workdir: must be an absolute path/],
      ['a relative stdout', { executors: [{ image: 'alpine', command: ['true'], stdout: 'out.txt' }] }, /executors\[0\]\.stdout: must be an absolute path/],
      ['a relative volume', simple({ volumes: ['shared'] }), /volumes\[0\]: must be an absolute path/],
      ['an input with neither url nor content', simple({ inputs: [{ path: '/data/x' }] }), /inputs\[0\]\.url: required unless content/],
      ['a file outside the allowed directories', simple({ inputs: [{ path: '/data/x', url: '/etc/passwd' }] }), /inputs\[0\]\.url: .*outside the allowed directories/],
      ['a file:// URL escaping with ..', simple({ outputs: [{ path: '/x/y', url: 'file:///tmp/../etc/y' }] }), /outputs\[0\]\.url: .*outside the allowed directories/],
      ['an unsupported scheme', simple({ inputs: [{ path: '/data/x', url: 'gs://bucket/key' }] }), /inputs\[0\]\.url: .*"gs:" is not served/],
      ['an s3:// URL without a bucket', simple({ inputs: [{ path: '/data/x', url: 's3:///key' }] }), /inputs\[0\]\.url: s3:\/\/\/key has no host/],
      ['an https URL that does not parse', simple({ outputs: [{ path: '/data/x', url: 'https://exa mple.org/x' }] }), /outputs\[0\]\.url: .* is not a valid URL/],
      ['an unknown file type', simple({ inputs: [{ path: '/data/x', url: 'https://example.org/x', type: 'FOLDER' }] }), /inputs\[0\]\.type: must be FILE or DIRECTORY/],
      ['a glob without path_prefix', simple({ outputs: [{ path: '/out/*.txt', url: 'https://example.org/o' }] }), /outputs\[0\]\.path_prefix: required when path contains wildcards/],
      ['cpu_cores as text', simple({ resources: { cpu_cores: 'two' } }), /resources\.cpu_cores: must be a number/],
      ['a tag value of the wrong type', simple({ tags: { a: 1 } }), /tags\.a: must be a string/],
      ['env of the wrong type', { executors: [{ image: 'alpine', command: ['true'], env: ['A=b'] }] }, /executors\[0\]\.env: must be an object of strings/],
      [
        'strict unsupported backend parameters',
        simple({ resources: { backend_parameters: { INVALID: 'PARAMETER' }, backend_parameters_strict: true } }),
        /resources\.backend_parameters: unsupported key\(s\) INVALID/,
      ],
    ];

    it.each(bodies)('refuses %s with a 400 naming the problem, storing nothing', async (_label, body, message) => {
      const before = await countTasks();
      const reply = await call('POST', '/ga4gh/tes/v1/tasks', body);
      expect(reply.status).toBe(400);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(reply.json).toEqual({ msg: expect.stringMatching(message), status_code: 400 });
      expect(await countTasks()).toBe(before);
    });

    const queries: Array<[string, RegExp]> = [
      ['/ga4gh/tes/v1/tasks?view=HUGE', /view: must be one of MINIMAL, BASIC, FULL/],
      ['/ga4gh/tes/v1/tasks?state=DONE', /state: must be one of/],
      ['/ga4gh/tes/v1/tasks?page_size=0', /page_size: must be an integer from 1 to 2048/],
      ['/ga4gh/tes/v1/tasks?page_size=100000', /page_size: must be an integer from 1 to 2048/],
      ['/ga4gh/tes/v1/tasks?page_size=abc', /page_size/],
      ['/ga4gh/tes/v1/tasks?page_token=garbage', /page_token: not a token this server issued/],
      ['/ga4gh/tes/v1/tasks?tag_value=orphan', /tag_value: more values than tag_key/],
      ['/ga4gh/tes/v1/tasks/some-id?view=everything', /view: must be one of/],
    ];

    it.each(queries)('refuses %s with a 400 naming the parameter', async (pathname, message) => {
      const reply = await call('GET', pathname);
      expect(reply.status).toBe(400);
      expect(reply.json).toEqual({ msg: expect.stringMatching(message), status_code: 400 });
    });
  });

  describe('list', () => {
    let ids: string[];

    beforeAll(async () => {
      ids = [];
      ids.push(await create(simple({ name: 'ListTest-alpha', tags: { list: 'yes', kind: 'a' } })));
      ids.push(await create(simple({ name: 'ListTest-beta', tags: { list: 'yes', kind: 'b' } })));
      ids.push(await create(simple({ name: 'ListTest-gamma', tags: { list: 'yes' } })));
    });

    it('pages newest first with exact page sizes and a token only while more remain', async () => {
      const first = await call('GET', '/ga4gh/tes/v1/tasks?tag_key=list&page_size=1');
      expect(first.json.tasks).toEqual([{ id: ids[2], state: 'QUEUED' }]);
      const second = await call('GET', `/v1/tasks?tag_key=list&page_size=2&page_token=${first.json.next_page_token}`);
      expect(second.json.tasks.map((t: any) => t.id)).toEqual([ids[1], ids[0]]);
      expect(second.json).not.toHaveProperty('next_page_token');
    });

    it('filters by name prefix, state and tags paired by position', async () => {
      const names = async (query: string) => (await call('GET', `/ga4gh/tes/v1/tasks?view=BASIC&${query}`)).json.tasks.map((t: any) => t.name);
      expect(await names('name_prefix=ListTest-b')).toEqual(['ListTest-beta']);
      expect(await names('name_prefix=istTest')).toEqual([]);
      expect(await names('tag_key=kind&tag_value=a')).toEqual(['ListTest-alpha']);
      expect(await names('tag_key=kind')).toEqual(['ListTest-beta', 'ListTest-alpha']);
      expect(await names('tag_key=list&tag_value=yes&tag_key=kind&tag_value=b')).toEqual(['ListTest-beta']);
      expect(await names('tag_key=list&tag_key=kind&tag_value=yes')).toEqual(['ListTest-beta', 'ListTest-alpha']);
      expect(await names('tag_key=nope')).toEqual([]);
      expect((await call('GET', '/ga4gh/tes/v1/tasks?state=COMPLETE')).json).toEqual({ tasks: [] });
    });

    it('returns spec-shaped tasks at every view', async () => {
      for (const view of ['MINIMAL', 'BASIC', 'FULL']) {
        const reply = await call('GET', `/ga4gh/tes/v1/tasks?view=${view}&tag_key=list`);
        expect(reply.json.tasks).toHaveLength(3);
        // MINIMAL is only id and state (the spec's own rule, narrower than the tesTask schema).
        if (view === 'MINIMAL') reply.json.tasks.forEach((t: object) => expect(Object.keys(t).sort()).toEqual(['id', 'state']));
        else {
          expectSchema('tesListTasksResponse', reply.json);
          expect(reply.json.tasks[0].executors).toEqual([{ image: 'alpine:latest', command: ['echo', 'hi'] }]);
        }
      }
    });
  });

  describe('cancel', () => {
    it('answers 200 {} without a body or content type and ends the task CANCELED', async () => {
      const id = await create(simple());
      const res = await fetch(`${root}/ga4gh/tes/v1/tasks/${id}:cancel`, { method: 'POST' });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await res.json()).toEqual({});
      const full = (await call('GET', `/ga4gh/tes/v1/tasks/${id}?view=FULL`)).json;
      expect(full.state).toBe('CANCELED');
      expect(full.logs[0].system_logs).toContain('canceled by request before it started');
    });

    it('accepts an empty body with a JSON content type and leaves a finished task as it is', async () => {
      const id = await create(simple());
      const first = await call('POST', `/v1/tasks/${id}:cancel`, '', { 'content-type': 'application/json' });
      expect(first).toMatchObject({ status: 200, json: {} });
      const again = await call('POST', `/v1/tasks/${id}:cancel`, '', { 'content-type': 'application/json' });
      expect(again).toMatchObject({ status: 200, json: {} });
      expect((await call('GET', `/v1/tasks/${id}`)).json.state).toBe('CANCELED');
    });
  });

  describe('docs and CORS', () => {
    it('redirects / to the Swagger UI, which serves the TES document with the spec schema names', async () => {
      const home = await call('GET', '/');
      expect(home.status).toBe(302);
      expect(home.headers.get('location')).toBe('/docs');
      const page = await fetch(`${root}/docs`);
      expect(page.status).toBe(200);
      expect(await page.text()).toMatch(/swagger/i);
      const document = (await call('GET', '/docs-json')).json;
      expect(document.info.title).toBe('Task Execution Service');
      expect(Object.keys(document.components.schemas)).toEqual(expect.arrayContaining(['tesTask', 'tesInput', 'tesOutput', 'tesExecutor', 'tesServiceInfo']));
      expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/tasks', '/tasks/{id}', '/tasks/{id}:cancel', '/service-info']));
    });

    const preflight = (base: string, origin: string) =>
      fetch(`${base}/ga4gh/tes/v1/tasks`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });

    it('answers CORS preflights from an origin in server.cors_origins', async () => {
      const res = await preflight(root, 'https://portal.example.org');
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-origin')).toBe('https://portal.example.org');
      expect(res.headers.get('access-control-allow-methods')).toMatch(/POST/);
    });

    it('grants no cross-origin access to an origin that is not listed', async () => {
      const res = await preflight(root, 'https://evil.example.net');
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      const read = await fetch(`${root}/ga4gh/tes/v1/tasks`, { headers: { origin: 'https://evil.example.net' } });
      expect(read.headers.get('access-control-allow-origin')).toBeNull();
    });

    it('grants no cross-origin access at all with the default settings', async () => {
      const plain = await startInProcessApp({ 'compute.local.max_concurrent_tasks': 0 });
      try {
        const res = await preflight(plain.root, 'https://portal.example.org');
        expect(res.headers.get('access-control-allow-origin')).toBeNull();
        expect(res.headers.get('access-control-allow-methods')).toBeNull();
        const read = await fetch(`${plain.root}/ga4gh/tes/v1/service-info`, { headers: { origin: 'https://portal.example.org' } });
        expect(read.status).toBe(200);
        expect(read.headers.get('access-control-allow-origin')).toBeNull();
      } finally {
        await plain.close();
      }
    });
  });
});
