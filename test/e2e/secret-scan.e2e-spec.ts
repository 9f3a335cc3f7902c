// No secret a task's URLs carry (userinfo passwords, signed-URL signatures and credentials, tokens, API keys)
// reaches any log line of the tesp process or any API answer: every response body and every line is scanned.
import { randomBytes } from 'node:crypto';
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ServiceProcess, TERMINAL } from './service-process';

const secret = (label: string) => `${label}${randomBytes(6).toString('hex')}`;

const S = {
  alicePassword: secret('alicepw'),
  googleSignature: secret('googsig'),
  googleCredential: secret('googcred'),
  clientSecret: secret('clientsecret'),
  apiKey: secret('apikey'),
  privateToken: secret('privtoken'),
  amzSignature: secret('amzsig'),
  amzToken: secret('amztoken'),
  bobPassword: secret('bobpw'),
  accessToken: secret('accesstoken'),
  azureSig: secret('azuresig'),
  wrongPassword: secret('wrongpw'),
  token: secret('token'),
  ftpPassword: secret('ftppw'),
  unknownSchemePassword: secret('schemepw'),
  secretParam: secret('secretparam'),
  privatePassword: secret('privatepw'),
  queryPassword: secret('querypw'),
  carolPassword: secret('carolpw'),
  signature: secret('signature'),
};

describe('no secret appears in any log line or API response', () => {
  let service: ServiceProcess;
  let files: Server;
  let port: number;
  const answers: string[] = [];

  /** Every API call goes through here, so its whole answer is kept for the scan. */
  const call = async (pathname: string, init?: RequestInit): Promise<{ status: number; json: any }> => {
    const res = await fetch(`${service.base}${pathname}`, init);
    const text = await res.text();
    answers.push(`${res.status} ${[...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n${text}`);
    return { status: res.status, json: JSON.parse(text) };
  };
  const create = (task: unknown) => call('/tasks', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(task) });

  beforeAll(async () => {
    // A store that wants alice's password for reads and takes uploads under /up/.
    const expected = 'Basic ' + Buffer.from(`alice:${S.alicePassword}`).toString('base64');
    files = createServer((req, res) => {
      if (req.method === 'PUT' && req.url?.startsWith('/up/')) {
        req.resume();
        req.on('end', () => res.writeHead(201).end());
        return;
      }
      if (req.headers.authorization !== expected) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="x"' }).end();
      res.writeHead(200, { 'content-length': '5' }).end('hello');
    });
    await new Promise<void>((resolve) => files.listen(0, '127.0.0.1', resolve));
    port = (files.address() as AddressInfo).port;
    service = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_COMPUTE__LOCAL__RUNTIME: 'process',
      TESP_LOGGING__LEVEL: 'debug',
      TESP_STORAGE__HTTP__RETRIES: '0',
      TESP_STORAGE__FTP__RETRIES: '0',
      // The file server is on 127.0.0.1; 10.0.0.1 stays refused (a 400 that quotes the URL).
      TESP_STORAGE__HTTP__ALLOW_PRIVATE_ADDRESSES: 'false',
      TESP_STORAGE__HTTP__ALLOWED_PRIVATE_CIDRS: '127.0.0.1/32',
    });
    await service.start();
  });

  afterAll(async () => {
    await service?.stop();
    service?.cleanup();
    await new Promise((resolve) => files?.close(resolve));
  });

  it('through create, get in every view, list, task logs and failures', async () => {
    const copy = { image: 'alpine', command: ['sh', '-c', 'cat "$TESP_TASK_ROOT/in/data.txt" > "$TESP_TASK_ROOT/out/r.txt"'] };
    const tasks = [
      {
        name: 'succeeds',
        executors: [copy],
        inputs: [{ path: '/in/data.txt', url: `http://alice:${S.alicePassword}@127.0.0.1:${port}/data.txt?X-Goog-Signature=${S.googleSignature}&X-Goog-Credential=${S.googleCredential}&client_secret=${S.clientSecret}` }],
        outputs: [{ path: '/out/r.txt', url: `http://127.0.0.1:${port}/up/r.txt?api-key=${S.apiKey}&private_token=${S.privateToken}&X-Amz-Signature=${S.amzSignature}&X-Amz-Security-Token=${S.amzToken}` }],
      },
      { name: 'unreachable input', executors: [copy], inputs: [{ path: '/in/data.txt', url: `http://bob:${S.bobPassword}@127.0.0.1:1/x?access_token=${S.accessToken}&sig=${S.azureSig}` }] },
      { name: 'refused password', executors: [copy], inputs: [{ path: '/in/data.txt', url: `http://alice:${S.wrongPassword}@127.0.0.1:${port}/data.txt?token=${S.token}` }] },
      { name: 'unreachable ftp', executors: [copy], inputs: [{ path: '/in/data.txt', url: `ftp://tes:${S.ftpPassword}@127.0.0.1:1/x` }] },
      {
        name: 'unreachable output',
        executors: [copy],
        inputs: [{ path: '/in/data.txt', content: 'hello' }],
        outputs: [{ path: '/out/r.txt', url: `http://carol:${S.carolPassword}@127.0.0.1:1/up?signature=${S.signature}` }],
      },
    ];
    const ids: string[] = [];
    for (const task of tasks) {
      const { status, json } = await create(task);
      expect(status).toBe(200);
      ids.push(json.id);
    }
    // Refused when created: the 400 names the URL without its secrets.
    const refused = [
      { executors: [copy], inputs: [{ path: '/in/x', url: `gs3://u:${S.unknownSchemePassword}@host/x?secret=${S.secretParam}` }] },
      { executors: [copy], inputs: [{ path: '/in/x', url: `http://u:${S.privatePassword}@10.0.0.1/x?password=${S.queryPassword}` }] },
    ];
    for (const task of refused) expect((await create(task)).status).toBe(400);

    const ended: any[] = [];
    for (const id of ids) {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const { json } = await call(`/tasks/${id}?view=FULL`);
        if (TERMINAL.includes(json.state)) {
          ended.push(json);
          break;
        }
        if (Date.now() > deadline) throw new Error(`task ${id} did not end: ${JSON.stringify(json)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    expect(ended.map((t) => t.state)).toEqual(['COMPLETE', 'SYSTEM_ERROR', 'SYSTEM_ERROR', 'SYSTEM_ERROR', 'SYSTEM_ERROR']);
    // The failures say what failed, with the URLs shown redacted.
    expect(ended[1].logs[0].system_logs.join('\n')).toMatch(/http:\/\/\*\*\*@127\.0\.0\.1:1\/x\?access_token=\*\*\*&sig=\*\*\*/);
    expect(ended[2].logs[0].system_logs.join('\n')).toMatch(/answered HTTP 401/);

    for (const id of ids) for (const view of ['MINIMAL', 'BASIC', 'FULL']) await call(`/tasks/${id}?view=${view}`);
    for (const view of ['MINIMAL', 'BASIC', 'FULL']) await call(`/tasks?view=${view}&page_size=100`);
    await call('/service-info');
    await call(`/tasks/${ids[0]}:cancel`, { method: 'POST' });

    // Give the last log lines (task finished) time to be written before the scan.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const logs = service.output;
    expect(logs).toContain('task finished');
    const basic = Buffer.from(`alice:${S.alicePassword}`).toString('base64');
    const hits: string[] = [];
    for (const [name, value] of [...Object.entries(S), ['alice basic header', basic] as const]) {
      for (const line of logs.split('\n')) if (line.includes(value)) hits.push(`${name} in log line: ${line}`);
      for (const answer of answers) if (answer.includes(value)) hits.push(`${name} in API answer: ${answer.slice(0, 400)}`);
    }
    expect(hits).toEqual([]);
    expect(answers.length).toBeGreaterThan(30);
  });
});
