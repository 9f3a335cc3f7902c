// FULL lists over tasks with large content inputs: each page stays within store.full_page_bytes (ending early with
// a next_page_token) and the walk still returns every task whole. Without the bound such a list built one string of
// every task's contents (GET /tasks?view=FULL over 9 tasks of 64 MiB answered 500, "Invalid string length").
import { call } from '../support/http-call';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';

const MIB = 1024 * 1024;
const TASKS = 9;
const CONTENT_BYTES = 2 * MIB;
const PAGE_BYTES = 5 * MIB;

describe('FULL task lists within a byte budget', () => {
  let server: InProcessApp;

  beforeAll(async () => {
    // Contents beyond the default limits.content_bytes (1 MiB): large tasks are what the byte budget is for.
    server = await startInProcessApp({ 'compute.local.max_concurrent_tasks': 0, 'store.full_page_bytes': PAGE_BYTES, 'limits.content_bytes': 4 * 1024 * 1024 });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('pages FULL lists of large tasks by bytes, every task whole, and BASIC lists without the contents', async () => {
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) {
      const content = String(i % 10).repeat(CONTENT_BYTES);
      const created = await call(server.root, 'POST', '/ga4gh/tes/v1/tasks', { inputs: [{ path: '/in/data', content }], executors: [{ image: 'alpine', command: ['cat', '/in/data'] }] });
      expect(created.status).toBe(200);
      ids.push(created.json.id);
    }
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await call(server.root, 'GET', `/ga4gh/tes/v1/tasks?view=FULL${token ? `&page_token=${token}` : ''}`);
      expect(page.status).toBe(200);
      // The budget counts stored bytes; the rendered page is about as large (a little JSON around each task).
      expect(Buffer.byteLength(page.text)).toBeLessThan(PAGE_BYTES + 64 * 1024);
      for (const task of page.json.tasks) {
        expect(task.inputs[0].content).toHaveLength(CONTENT_BYTES);
        expect(task.inputs[0].content[0]).toBe(String(ids.indexOf(task.id) % 10));
        seen.push(task.id);
      }
      token = page.json.next_page_token;
      pages += 1;
    } while (token);
    expect(seen).toEqual([...ids].reverse());
    expect(pages).toBeGreaterThanOrEqual(Math.ceil((TASKS * CONTENT_BYTES) / PAGE_BYTES));
    const basic = await call(server.root, 'GET', '/ga4gh/tes/v1/tasks?view=BASIC');
    expect(basic.status).toBe(200);
    expect(basic.json.tasks).toHaveLength(TASKS);
    expect(basic.text.length).toBeLessThan(64 * 1024);
  });
});
