// OpenID Connect bearer tokens against a real provider (the npm package oidc-provider, in a child process) and the
// built service as an operator runs it, with Basic beside it. Tokens come from the provider's token endpoint; the
// odd ones (expired, wrong audience, ...) are signed with the provider's own key, so they are checked against its
// real discovery document and JWKS. Every log line and answer is scanned for the secrets and tokens used.
import { generateKeyPairSync, createHmac, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as bcrypt from 'bcryptjs';
import { OidcProviderProcess, signJwt } from '../support/oidc-provider-process';
import { ServiceProcess } from './service-process';

const AUDIENCE = 'https://tesp.test/api';
const CLIENTS = [
  { id: 'alice', secret: 'alice-cl1ent-s3cret-value', groups: ['lab'] },
  { id: 'root', secret: 'r00t-cl1ent-s3cret-value', groups: ['lab', 'tesp-admins'] },
  { id: 'outsider', secret: '0uts1der-cl1ent-s3cret', groups: [] },
  { id: 'tesp-introspector', secret: 'intr0spect10n-s3cret-value', groups: [] },
];
const BOB_PASSWORD = 'b0b-basic-pa55word';

describe('authentication with OpenID Connect and Basic (the built service, a real provider)', () => {
  let listed: OidcProviderProcess;
  let unlisted: OidcProviderProcess;
  let service: ServiceProcess;
  /** Everything a test must never see again in a log line or an answer. */
  const secrets = new Set<string>([BOB_PASSWORD, ...CLIENTS.map((c) => c.secret)]);
  const answers: string[] = [];

  const call = async (pathname: string, authorization?: string, init: RequestInit = {}) => {
    const headers: Record<string, string> = { ...(init.headers as Record<string, string>) };
    if (authorization !== undefined) headers.authorization = authorization;
    const res = await fetch(`http://127.0.0.1:${service.port}${pathname}`, { ...init, headers, redirect: 'manual' });
    const text = await res.text();
    answers.push(`${res.status} ${JSON.stringify([...res.headers])} ${text}`);
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text, headers: res.headers };
  };
  const bearer = (token: string) => {
    secrets.add(token);
    return `Bearer ${token}`;
  };
  const listTasks = (authorization?: string) => call('/ga4gh/tes/v1/tasks', authorization);
  const nowS = () => Math.floor(Date.now() / 1000);

  /** Claims as the listed provider would issue them, for tokens signed with its own key. */
  const claims = (extra: Record<string, unknown> = {}) => ({ iss: listed.issuer, sub: 'carol', aud: AUDIENCE, iat: nowS(), exp: nowS() + 300, scope: 'tes:read tes:write', groups: ['lab'], ...extra });
  const signedByProvider = async (extra: Record<string, unknown> = {}, header: Record<string, unknown> = {}) => {
    const { key, kid } = await listed.signingKey();
    return signJwt({ alg: 'RS256', typ: 'at+jwt', kid, ...header }, claims(extra), key);
  };

  const expectUnauthenticated = (reply: { status: number; json: any; headers: Headers }, msg: RegExp) => {
    expect({ status: reply.status, json: reply.json }).toEqual({ status: 401, json: { msg: expect.stringMatching(msg), status_code: 401 } });
    expect(reply.headers.get('www-authenticate')).toBe('Basic realm="tesp", charset="UTF-8", Bearer realm="tesp"');
  };

  beforeAll(async () => {
    [listed, unlisted] = await Promise.all([OidcProviderProcess.start(AUDIENCE, CLIENTS), OidcProviderProcess.start(AUDIENCE, CLIENTS)]);
    const dataDir = ServiceProcess.tempDataDir();
    const secretFile = path.join(dataDir, 'introspection-secret');
    writeFileSync(secretFile, `${CLIENTS[3].secret}\n`);
    const bobHash = bcrypt.hashSync(BOB_PASSWORD, 4).replace(/^\$2b\$/, '$2y$');
    secrets.add(bobHash);
    service = new ServiceProcess(dataDir, {
      TESP_LOGGING__LEVEL: 'debug',
      TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '0',
      TESP_AUTH__MODES: 'basic,oidc',
      TESP_AUTH__BASIC__USERS: `bob:${bobHash}`,
      TESP_AUTH__OIDC__ISSUERS: listed.issuer,
      TESP_AUTH__OIDC__AUDIENCE: AUDIENCE,
      TESP_AUTH__OIDC__REQUIRED_SCOPES: 'tes:read',
      TESP_AUTH__OIDC__REQUIRED_GROUPS: 'lab',
      TESP_AUTH__OIDC__CLOCK_SKEW_S: '30',
      // Every unknown kid may fetch the JWKS again, so the order of the tests below does not matter.
      TESP_AUTH__OIDC__JWKS_REFETCH_INTERVAL_S: '0',
      TESP_AUTH__OIDC__INTROSPECTION_CLIENT_ID: 'tesp-introspector',
      TESP_AUTH__OIDC__INTROSPECTION_CLIENT_SECRET_FILE: secretFile,
      TESP_AUTH__ADMIN__GROUPS: 'tesp-admins',
    });
    await service.start();
  });

  afterAll(async () => {
    await service?.stop();
    service?.cleanup();
    listed?.stop();
    unlisted?.stop();
  });

  it('keeps service-info, / and /docs public, and describes the accepted schemes in service-info', async () => {
    const info = await call('/ga4gh/tes/v1/service-info');
    expect(info.status).toBe(200);
    expect(info.json.tesp_auth).toEqual({ schemes: ['Basic', 'Bearer'], basic_realm: 'tesp', oidc_issuers: [listed.issuer], oidc_audience: AUDIENCE });
    expect((await call('/')).status).toBe(302);
    expect((await call('/docs')).status).toBe(200);
    expect((await call('/docs-json')).json.security).toEqual([{ basicAuth: [] }, { bearerAuth: [] }]);
    // With credentials that are not valid, public routes still answer.
    expect((await call('/v1/service-info', 'Bearer not-a-token')).status).toBe(200);
  });

  it('refuses the task routes without credentials, with a 401 JSON body and both challenges', async () => {
    expectUnauthenticated(await listTasks(), /needs a user/);
    expectUnauthenticated(await call('/ga4gh/tes/v1/tasks', undefined, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }), /needs a user/);
  });

  it('lets in a token from the listed provider, and creates a task with it', async () => {
    const token = await listed.token('alice');
    expect((await listTasks(bearer(token))).status).toBe(200);
    const created = await call('/ga4gh/tes/v1/tasks', bearer(token), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ executors: [{ image: 'alpine', command: ['true'] }] }),
    });
    expect(created.status).toBe(200);
  });

  it('lets in Basic users beside bearer tokens', async () => {
    expect((await listTasks(`Basic ${Buffer.from(`bob:${BOB_PASSWORD}`).toString('base64')}`)).status).toBe(200);
    expectUnauthenticated(await listTasks(`Basic ${Buffer.from('bob:wrong').toString('base64')}`), /user name or password/);
  });

  it('refuses expired and not-yet-valid tokens beyond the clock skew', async () => {
    expectUnauthenticated(await listTasks(bearer(await signedByProvider({ iat: nowS() - 7200, exp: nowS() - 3600 }))), /expired/);
    expectUnauthenticated(await listTasks(bearer(await signedByProvider({ nbf: nowS() + 3600 }))), /not valid yet/);
    // Within the skew, both pass.
    expect((await listTasks(bearer(await signedByProvider({ exp: nowS() - 5, nbf: nowS() + 5 })))).status).toBe(200);
  });

  it('refuses a wrong audience, an edited payload, alg none, an unsigned token, HS256 and a key the issuer does not publish', async () => {
    expectUnauthenticated(await listTasks(bearer(await signedByProvider({ aud: 'https://other.example' }))), /not meant for this server/);

    const [header, , signature] = (await listed.token('alice')).split('.');
    const edited = Buffer.from(JSON.stringify({ ...claims(), sub: 'mallory' })).toString('base64url');
    expectUnauthenticated(await listTasks(bearer(`${header}.${edited}.${signature}`)), /signature is not valid/);

    expectUnauthenticated(await listTasks(bearer(signJwt({ alg: 'none', typ: 'JWT' }, claims()))), /not signed/);
    expectUnauthenticated(await listTasks(bearer(signJwt({ alg: 'RS256', kid: (await listed.signingKey()).kid }, claims()))), /not signed/);

    const hsHeader = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
    const hsBody = Buffer.from(JSON.stringify(claims())).toString('base64url');
    const hsSignature = createHmac('sha256', CLIENTS[0].secret).update(`${hsHeader}.${hsBody}`).digest('base64url');
    expectUnauthenticated(await listTasks(bearer(`${hsHeader}.${hsBody}.${hsSignature}`)), /algorithm "HS256" is not accepted/);

    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    expectUnauthenticated(await listTasks(bearer(signJwt({ alg: 'RS256', kid: 'stranger' }, claims(), stranger))), /key its issuer does not publish/);
    // The provider's kid with a stranger's signature.
    expectUnauthenticated(await listTasks(bearer(signJwt({ alg: 'RS256', kid: (await listed.signingKey()).kid }, claims(), stranger))), /signature is not valid/);
  });

  it('refuses a token of an issuer that is not listed without contacting that issuer', async () => {
    const token = await unlisted.token('alice');
    expectUnauthenticated(await listTasks(bearer(token)), /not from an issuer this server accepts/);
    // The listed provider's key under another iss is refused the same way.
    expectUnauthenticated(await listTasks(bearer(await signedByProvider({ iss: unlisted.issuer }))), /not from an issuer/);
    expect(await unlisted.requestCount()).toBe(0);
    expect(await listed.requestCount()).toBeGreaterThan(0);
  });

  it('picks up a rotated signing key', async () => {
    const before = JSON.parse(Buffer.from((await listed.token('alice')).split('.')[0], 'base64url').toString()).kid;
    const kid = await listed.rotate();
    const token = await listed.token('alice');
    expect(JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).kid).toBe(kid);
    expect(kid).not.toBe(before);
    expect((await listTasks(bearer(token))).status).toBe(200);
  });

  it('fetches the JWKS again for unknown key ids at most once per jwks_refetch_interval_s', async () => {
    // A service with the default interval (60 s): made-up kids cannot make it hammer the issuer.
    const limited = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '0',
      TESP_AUTH__MODES: 'oidc',
      TESP_AUTH__OIDC__ISSUERS: listed.issuer,
      TESP_AUTH__OIDC__AUDIENCE: AUDIENCE,
    });
    await limited.start();
    try {
      const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
      const tryKid = async (kid: string) => {
        const res = await fetch(`${limited.base}/tasks`, { headers: { authorization: bearer(signJwt({ alg: 'RS256', kid }, claims(), stranger)) } });
        answers.push(`${res.status} ${await res.text()}`);
        return res.status;
      };
      expect(await tryKid('made-up-1')).toBe(401);
      const afterFirst = await listed.requestCount();
      expect([await tryKid('made-up-2'), await tryKid('made-up-3')]).toEqual([401, 401]);
      expect(await listed.requestCount()).toBe(afterFirst);
      // A real token still passes: its key is known.
      expect((await fetch(`${limited.base}/tasks`, { headers: { authorization: bearer(await listed.token('alice')) } })).status).toBe(200);
    } finally {
      await limited.stop();
      limited.cleanup();
    }
  });

  it('introspects opaque tokens at the first issuer', async () => {
    const opaque = await listed.token('alice', { resource: 'urn:tesp:opaque' });
    expect(opaque.split('.')).toHaveLength(1);
    expect((await listTasks(bearer(opaque))).status).toBe(200);
    expectUnauthenticated(await listTasks(bearer(`made-up-${randomUUID()}`)), /not active/);
  });

  it('answers 403 to a known caller lacking a required scope or group', async () => {
    const noScope = await call('/ga4gh/tes/v1/tasks', bearer(await listed.token('alice', { scope: 'tes:write' })));
    expect({ status: noScope.status, json: noScope.json }).toEqual({ status: 403, json: { msg: expect.stringMatching(/lacks the scope\(s\) tes:read/), status_code: 403 } });
    const noGroup = await call('/ga4gh/tes/v1/tasks', bearer(await listed.token('outsider')));
    expect({ status: noGroup.status, json: noGroup.json }).toEqual({ status: 403, json: { msg: expect.stringMatching(/not in the group\(s\) lab/), status_code: 403 } });
  });

  it('never shows a password, hash, client secret or token in a log line or an answer', () => {
    const logs = service.output;
    expect(logs).toContain('authentication refused');
    for (const secret of secrets) {
      expect({ secret, inLogs: logs.includes(secret) }).toEqual({ secret, inLogs: false });
      expect({ secret, inAnswers: answers.some((answer) => answer.includes(secret)) }).toEqual({ secret, inAnswers: false });
      // Nor its signature part alone (tokens are unique by their signature).
      const signature = secret.split('.').at(-1)!;
      if (signature.length > 20) expect(logs.includes(signature) || answers.some((answer) => answer.includes(signature))).toBe(false);
    }
  });
});
