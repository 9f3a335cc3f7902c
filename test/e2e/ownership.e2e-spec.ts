// Two users on one server with Basic authentication: each sees, reads and cancels only their own tasks; the admin
// sees both. Over HTTP against the real app and its SQLite store.
import { hashSync } from 'bcryptjs';
import { call, Reply } from '../support/http-call';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';

const PASSWORDS = { alice: 'alice-pw-7f3a', bob: 'bob-pw-19c2', root: 'root-pw-a0e4' } as const;
type User = keyof typeof PASSWORDS;

const basic = (user: User) => ({ authorization: `Basic ${Buffer.from(`${user}:${PASSWORDS[user]}`).toString('base64')}` });
const task = (name: string) => ({ name, tags: { run: 'ownership' }, executors: [{ image: 'busybox', command: ['true'] }] });

describe('tasks per user, with Basic authentication', () => {
  let server: InProcessApp;
  const as = (user: User, method: string, path: string, body?: unknown): Promise<Reply> => call(server.root, method, `/ga4gh/tes/v1${path}`, body, basic(user));
  const created: Record<User, string[]> = { alice: [], bob: [], root: [] };

  /** Every id a user's list returns, page by page. */
  async function listAll(user: User, query: string): Promise<string[]> {
    const ids: string[] = [];
    let token = '';
    for (let pages = 0; pages < 50; pages++) {
      const reply = await as(user, 'GET', `/tasks?${query}${token ? `&page_token=${encodeURIComponent(token)}` : ''}`);
      expect(reply.status).toBe(200);
      ids.push(...reply.json.tasks.map((t: { id: string }) => t.id));
      if (!reply.json.next_page_token) return ids;
      token = reply.json.next_page_token;
    }
    throw new Error('more than 50 pages');
  }

  beforeAll(async () => {
    server = await startInProcessApp({
      'compute.local.max_concurrent_tasks': 0,
      'auth.modes': ['basic'],
      'auth.basic.users': (Object.keys(PASSWORDS) as User[]).map((user) => `${user}:${hashSync(PASSWORDS[user], 4).replace(/^\$2b\$/, '$2y$')}`),
      'auth.admin.users': ['root'],
    });
    // Interleaved, so that an owner's tasks are not one block of the table.
    for (let i = 0; i < 7; i++) {
      for (const user of ['alice', 'bob'] as const) {
        const reply = await as(user, 'POST', '/tasks', task(`${user}-${i}`));
        expect(reply.status).toBe(200);
        created[user].push(reply.json.id);
      }
    }
  });

  afterAll(() => server?.close());

  it('lists only the caller’s own tasks, paging within them', async () => {
    expect((await listAll('alice', 'page_size=3')).sort()).toEqual([...created.alice].sort());
    expect((await listAll('bob', 'page_size=2&view=BASIC')).sort()).toEqual([...created.bob].sort());
    expect((await listAll('alice', 'page_size=3&tag_key=run&tag_value=ownership&state=QUEUED')).sort()).toEqual([...created.alice].sort());
  });

  it('answers 404 for another user’s task, exactly as for a task that does not exist', async () => {
    const missing = await as('alice', 'GET', '/tasks/00000000-0000-4000-8000-000000000000');
    const others = await as('alice', 'GET', `/tasks/${created.bob[0]}?view=FULL`);
    expect(others.status).toBe(404);
    expect(missing.status).toBe(404);
    expect(others.json.msg.replace(created.bob[0], 'ID')).toBe(missing.json.msg.replace('00000000-0000-4000-8000-000000000000', 'ID'));
    expect((await as('bob', 'GET', `/tasks/${created.bob[0]}`)).status).toBe(200);
  });

  it('does not cancel another user’s task', async () => {
    const refused = await as('bob', 'POST', `/tasks/${created.alice[1]}:cancel`);
    expect(refused.status).toBe(404);
    expect((await as('alice', 'GET', `/tasks/${created.alice[1]}`)).json.state).toBe('QUEUED');
    const own = await as('alice', 'POST', `/tasks/${created.alice[1]}:cancel`);
    expect(own.status).toBe(200);
    expect(['CANCELING', 'CANCELED']).toContain((await as('alice', 'GET', `/tasks/${created.alice[1]}`)).json.state);
  });

  it('lets the admin list, read and cancel every task', async () => {
    const all = await listAll('root', 'page_size=4');
    expect(all.sort()).toEqual([...created.alice, ...created.bob].sort());
    expect((await as('root', 'GET', `/tasks/${created.bob[2]}`)).status).toBe(200);
    expect((await as('root', 'POST', `/tasks/${created.bob[2]}:cancel`)).status).toBe(200);
  });

  it('refuses the task routes without credentials', async () => {
    const reply = await call(server.root, 'GET', '/ga4gh/tes/v1/tasks');
    expect(reply.status).toBe(401);
    expect(reply.headers.get('www-authenticate')).toMatch(/Basic/);
  });
});
