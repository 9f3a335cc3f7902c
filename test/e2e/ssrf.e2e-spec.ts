// A task cannot make tesp reach loopback, private or metadata addresses: literals are refused when the task is
// created, names when they resolve, redirects at every hop; the server a task aims at never sees a request.
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';
import { runTask } from '../support/run-task';

interface CountingServer {
  server: Server;
  port: number;
  requests: string[];
}

async function countingServer(host: string, answer: (path: string) => { status: number; headers?: Record<string, string>; body?: string }): Promise<CountingServer> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const { status, headers, body } = answer(req.url ?? '/');
    res.writeHead(status, headers).end(body ?? '');
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { server, port: (server.address() as AddressInfo).port, requests };
}

const taskWith = (inputs: unknown[], outputs: unknown[] = []) => ({ executors: [{ image: 'alpine', command: ['true'] }], inputs, outputs });
const input = (url: string) => ({ url, path: '/in/x', type: 'FILE' });

describe('SSRF: tasks cannot reach private addresses', () => {
  let app: InProcessApp;
  let target: CountingServer;
  let redirector: CountingServer;

  beforeAll(async () => {
    // The target plays the service an attacker wants (a metadata endpoint, an admin page) on 127.0.0.1.
    target = await countingServer('127.0.0.1', () => ({ status: 200, body: 'secret metadata' }));
    // A "public" server, as tesp sees it (127.0.0.2 is allowed below), that redirects into the private network.
    redirector = await countingServer('127.0.0.2', (p) => ({
      status: 302,
      headers: { location: p.startsWith('/by-name') ? `http://localhost:${target.port}/x` : `http://127.0.0.1:${target.port}/x` },
    }));
    app = await startInProcessApp({
      'compute.local.runtime': 'process',
      'scheduler.poll_interval_ms': 50,
      'storage.http.retries': 0,
      'storage.ftp.retries': 0,
      // The defaults, as an operator has them, except for the one "public" address of the redirector.
      'storage.http.allow_private_addresses': false,
      'storage.http.allowed_private_cidrs': ['127.0.0.2/32'],
      'storage.ftp.allow_private_addresses': false,
    });
  });

  afterAll(async () => {
    await app?.close();
    await new Promise((resolve) => target?.server.close(resolve));
    await new Promise((resolve) => redirector?.server.close(resolve));
  });

  afterEach(() => {
    expect(target.requests).toEqual([]);
  });

  it.each([
    ['127.0.0.1', () => `http://127.0.0.1:${target.port}/x`, /127\.0\.0\.1 is a loopback address \(127\.0\.0\.0\/8\)/],
    ['an IPv4-mapped IPv6 loopback', () => `http://[::ffff:127.0.0.1]:${target.port}/x`, /loopback address \(127\.0\.0\.0\/8/],
    ['a private address', () => 'http://10.0.0.1/x', /10\.0\.0\.1 is a private address \(10\.0\.0\.0\/8\)/],
    ['loopback written as a number', () => `http://2130706433:${target.port}/x`, /127\.0\.0\.1 is a loopback address/],
    ['loopback in hexadecimal', () => `http://0x7f.0.0.1:${target.port}/x`, /127\.0\.0\.1 is a loopback address/],
    ['"this network"', () => `http://0.0.0.0:${target.port}/x`, /0\.0\.0\.0 is a "this network" address/],
    ['the cloud metadata address', () => 'http://169.254.169.254/latest/meta-data/', /169\.254\.169\.254 is a link-local \(cloud metadata\) address/],
    ['an IPv6 unique local address', () => 'https://[fd00::1]/x', /fd00::1 is a unique local \(private\) address \(fc00::\/7\)/],
  ])('refuses an input at %s when the task is created, naming the rule and the setting', async (_what, url, rule) => {
    const answer = await runTask(app, taskWith([input(url())]));
    expect(answer.status).toBe(400);
    expect(answer.msg).toMatch(/^inputs\[0\]\.url: /);
    expect(answer.msg).toMatch(rule);
    expect(answer.msg).toContain('storage.http.allow_private_addresses');
  });

  it('refuses an output to a private address and an ftp host on loopback at create', async () => {
    const output = await runTask(app, taskWith([], [{ url: 'http://192.168.1.1/up', path: '/out/x', type: 'FILE' }]));
    expect(output.status).toBe(400);
    expect(output.msg).toMatch(/^outputs\[0\]\.url: .*192\.168\.1\.1 is a private address \(192\.168\.0\.0\/16\)/);
    const ftp = await runTask(app, taskWith([input(`ftp://127.0.0.1:${target.port}/x`)]));
    expect(ftp.status).toBe(400);
    expect(ftp.msg).toMatch(/loopback address .*storage\.ftp\.allow_private_addresses/);
  });

  it('ends a task whose host name resolves to loopback SYSTEM_ERROR, saying why', async () => {
    const task = await runTask(app, taskWith([input(`http://localhost:${target.port}/x`)]));
    expect(task.state).toBe('SYSTEM_ERROR');
    expect(task.logs[0].system_logs.join('\n')).toMatch(/staging inputs\[0\] .*localhost resolves to (127\.0\.0\.1|::1), a loopback address .*storage\.http\.allow_private_addresses/);
  });

  it('ends a task whose ftp host name resolves to loopback SYSTEM_ERROR', async () => {
    const task = await runTask(app, taskWith([input(`ftp://localhost:${target.port}/x`)]));
    expect(task.state).toBe('SYSTEM_ERROR');
    expect(task.logs[0].system_logs.join('\n')).toMatch(/localhost resolves to .*, a loopback address .*storage\.ftp\.allow_private_addresses/);
  });

  it.each([
    ['an address', '/by-address', /redirected from http:\/\/127\.0\.0\.2:\d+\/by-address\): 127\.0\.0\.1 is a loopback address/],
    ['a name', '/by-name', /localhost resolves to (127\.0\.0\.1|::1), a loopback address/],
  ])('refuses a redirect from an allowed server to %s in the private network', async (_what, route, reason) => {
    const before = redirector.requests.length;
    const task = await runTask(app, taskWith([input(`http://127.0.0.2:${redirector.port}${route}`)]));
    expect(task.state).toBe('SYSTEM_ERROR');
    expect(task.logs[0].system_logs.join('\n')).toMatch(reason);
    expect(redirector.requests.length).toBeGreaterThan(before);
  });
});
