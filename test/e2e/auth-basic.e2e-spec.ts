// HTTP Basic and the per-user rate limit, in-process with the real modules: which routes stay public, what every
// malformed Authorization header gets (401 JSON with the challenge), and 429 with Retry-After per user.
import * as bcrypt from 'bcryptjs';
import { call, Reply } from '../support/http-call';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';

const PASSWORDS = { alice: 'alice-pa55-w0rd', bob: 'b0b:with:colons' };
// As `htpasswd -nbB` writes them ($2y$); cost 4 keeps the tests quick.
const entry = (user: keyof typeof PASSWORDS) => `${user}:${bcrypt.hashSync(PASSWORDS[user], 4).replace(/^\$2b\$/, '$2y$')}`;
const basic = (credentials: string) => `Basic ${Buffer.from(credentials).toString('base64')}`;
const CHALLENGE = 'Basic realm="tesp", charset="UTF-8"';

const answers: Reply[] = [];
async function get(root: string, pathname: string, authorization?: string): Promise<Reply> {
  const reply = await call(root, 'GET', pathname, undefined, authorization === undefined ? {} : { authorization });
  answers.push(reply);
  return reply;
}

function expect401(reply: Reply, msg: RegExp): void {
  expect({ status: reply.status, json: reply.json }).toEqual({ status: 401, json: { msg: expect.stringMatching(msg), status_code: 401 } });
  expect(reply.headers.get('www-authenticate')).toBe(CHALLENGE);
}

describe('HTTP Basic authentication', () => {
  let server: InProcessApp;
  const users = [entry('alice'), entry('bob')];

  beforeAll(async () => {
    server = await startInProcessApp({ 'compute.local.max_concurrent_tasks': 0, 'auth.modes': ['basic'], 'auth.basic.users': users });
  });
  afterAll(async () => server?.close());

  it('keeps service-info, / and /docs public, and not the task routes', async () => {
    expect((await get(server.root, '/ga4gh/tes/v1/service-info')).json.tesp_auth).toEqual({ schemes: ['Basic'], basic_realm: 'tesp' });
    expect((await get(server.root, '/v1/service-info')).status).toBe(200);
    expect((await get(server.root, '/')).status).toBe(302);
    expect((await get(server.root, '/docs')).status).toBe(200);
    expect401(await get(server.root, '/ga4gh/tes/v1/tasks'), /needs a user: send an Authorization header \(Basic\)/);
    expect401(await get(server.root, '/v1/tasks/some-id'), /needs a user/);
  });

  it('offers the Basic login in Swagger UI, on every operation but service-info', async () => {
    const document = (await get(server.root, '/docs-json')).json;
    expect(document.components.securitySchemes).toEqual({ basicAuth: expect.objectContaining({ type: 'http', scheme: 'basic' }) });
    expect(document.security).toEqual([{ basicAuth: [] }]);
    expect(document.paths['/service-info'].get.security).toEqual([]);
    expect(document.paths['/tasks'].get.security).toBeUndefined();
  });

  it('lets in the right password, also on a second request (remembered), and refuses a wrong one', async () => {
    expect((await get(server.root, '/ga4gh/tes/v1/tasks', basic(`alice:${PASSWORDS.alice}`))).status).toBe(200);
    expect((await get(server.root, '/ga4gh/tes/v1/tasks', basic(`alice:${PASSWORDS.alice}`))).status).toBe(200);
    expect((await get(server.root, '/ga4gh/tes/v1/tasks', `basic   ${Buffer.from(`bob:${PASSWORDS.bob}`).toString('base64')}`)).status).toBe(200);
    expect401(await get(server.root, '/ga4gh/tes/v1/tasks', basic('alice:not-her-password')), /user name or password is not valid/);
    expect401(await get(server.root, '/ga4gh/tes/v1/tasks', basic(`bob:${PASSWORDS.alice}`)), /user name or password is not valid/);
  });

  it('refuses an unknown user with the same answer as a wrong password', async () => {
    expect401(await get(server.root, '/ga4gh/tes/v1/tasks', basic(`mallory:${PASSWORDS.alice}`)), /^the user name or password is not valid$/);
  });

  it.each([
    ['not base64', 'Basic !!!not*base64', /not base64/],
    ['no colon', basic('alice'), /not name:password/],
    ['an empty user', basic(`:${PASSWORDS.alice}`), /not name:password/],
    ['Basic alone', 'Basic', /credentials are empty/],
    ['an empty header', '', /header is empty/],
    ['another scheme', 'Digest username="alice"', /scheme is not accepted here; use Basic/],
    ['a bearer token', 'Bearer abc.def.ghi', /scheme is not accepted here; use Basic/],
  ])('refuses %s with a 401 JSON body and the challenge', async (_what, header, msg) => {
    expect401(await get(server.root, '/ga4gh/tes/v1/tasks', header), msg);
  });

  it('never echoes a password or a hash', () => {
    const secrets = [...Object.values(PASSWORDS), ...users.map((u) => u.slice(u.indexOf(':') + 1)), 'not-her-password'];
    const text = answers.map((a) => JSON.stringify([a.status, [...a.headers], a.text])).join('\n');
    for (const secret of secrets) expect({ secret, found: text.includes(secret) }).toEqual({ secret, found: false });
  });
});

describe('the per-user rate limit', () => {
  let server: InProcessApp;

  beforeAll(async () => {
    server = await startInProcessApp({
      'compute.local.max_concurrent_tasks': 0,
      'auth.modes': ['basic'],
      'auth.basic.users': [entry('alice'), entry('bob')],
      // One request a minute after a burst of three: the fourth in a row is refused.
      'auth.rate_limit.requests_per_minute': 1,
      'auth.rate_limit.burst': 3,
    });
  });
  afterAll(async () => server?.close());

  it('answers 429 with Retry-After after the burst, for that user only', async () => {
    const alice = basic(`alice:${PASSWORDS.alice}`);
    for (let i = 0; i < 3; i++) expect((await get(server.root, '/ga4gh/tes/v1/tasks', alice)).status).toBe(200);
    const refused = await get(server.root, '/ga4gh/tes/v1/tasks', alice);
    expect({ status: refused.status, json: refused.json }).toEqual({ status: 429, json: { msg: expect.stringMatching(/too many requests: auth.rate_limit allows 1 a minute/), status_code: 429 } });
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Bob has his own bucket; public routes take from none.
    expect((await get(server.root, '/ga4gh/tes/v1/tasks', basic(`bob:${PASSWORDS.bob}`))).status).toBe(200);
    expect((await get(server.root, '/ga4gh/tes/v1/service-info')).status).toBe(200);
  });

  it('counts failed attempts against the address, so passwords cannot be guessed at full speed', async () => {
    const guesses: number[] = [];
    for (let i = 0; i < 4; i++) guesses.push((await get(server.root, '/ga4gh/tes/v1/tasks', basic(`bob:guess-${i}`))).status);
    expect(guesses).toEqual([401, 401, 401, 429]);
  });
});
