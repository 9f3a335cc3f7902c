// The API under load, against a bare node:http server answering the same bodies, and against an earlier build of
// tesp when BENCH_BEFORE names one (a checkout with node_modules and dist/ built, e.g. commit 916de99, the last on
// Express with writes on the event loop):
//   - create: POST /tasks at concurrency 32 (validation + durable SQLite insert, synchronous=FULL);
//   - poll: GET of one task at MINIMAL at concurrency 32, and with If-None-Match (304) where tesp sends ETags;
//   - poll under load: p99 of one poller's GETs (MINIMAL, one at a time) while creates run at concurrency 32.
// Creates are also measured against the least a durable create needs (startDurableBaseline: node:http, JSON.parse,
// one row committed to SQLite with synchronous=FULL in group-commit batches), the floor under tesp's own, and
// against that floor without the fsync (synchronous=OFF), which tells what the disk's flush costs. Each create
// run also reports the CPU spent per request by the server (main thread, all threads) and by the load client, and
// from that the rate the machine's cores would allow if they were never idle.
// Every server is warmed up (WARMUP requests) before it is measured, so the JIT and caches are in a steady state
// for each, and each measured run is long enough (TOTAL requests) that start-up effects do not dominate it.
// Builds are measured in alternating rounds (BENCH_ROUNDS, best round kept) so that drift on a shared VM hits
// both. Tasks stay QUEUED (no dispatching) so only the API is measured.
'use strict';
const os = require('node:os');
const { tempDir, removeDir, watchdog, startTesp, withCpu, startBaseline, startDurableBaseline, load, percentile, fmt } = require('./lib');

const TOTAL = Number(process.env.BENCH_CREATE_TOTAL ?? 20000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const BEFORE = process.env.BENCH_BEFORE;
const WARMUP = Number(process.env.BENCH_CREATE_WARMUP ?? 5000);
const CONCURRENCY = 32;
const API = '/ga4gh/tes/v1';
const TASK = JSON.stringify({
  name: 'md5sum example',
  inputs: [{ path: '/data/file1', content: 'hello tesp\n' }],
  executors: [{ image: 'alpine:latest', command: ['md5sum', '/data/file1'] }],
  tags: { bench: 'create' },
});

const post = (origin, requestPath, total) => load(origin, { method: 'POST', path: requestPath, body: TASK, total, concurrency: CONCURRENCY });
const get = (origin, requestPath, total, extra = {}) => load(origin, { method: 'GET', path: requestPath, total, concurrency: CONCURRENCY, ...extra });

/** One round against one build: create, poll, conditional poll, poll under load. */
async function measureTesp(root) {
  const dataDir = tempDir('tesp-bench-create-');
  // No capacity and the longest allowed dispatch delay keep every created task QUEUED: no container runs during the
  // load, and nothing is staged (so no storage settings, which older builds may not know).
  const tesp = await startTesp({ TESP_DATA_DIR: dataDir, TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '0', TESP_SCHEDULER__POLL_INTERVAL_MS: '60000',
    TESP_STORAGE__HTTP__ALLOW_PRIVATE_ADDRESSES: undefined, TESP_STORAGE__FTP__ALLOW_PRIVATE_ADDRESSES: undefined }, root);
  try {
    await post(tesp.origin, `${API}/tasks`, WARMUP);
    const create = await withCpu(tesp.pid, () => post(tesp.origin, `${API}/tasks`, TOTAL));
    const created = await fetch(`${tesp.base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: TASK });
    const { id } = await created.json();
    const one = `${API}/tasks/${id}?view=MINIMAL`;
    await get(tesp.origin, one, WARMUP);
    const poll = await get(tesp.origin, one, TOTAL);
    const etag = (await fetch(`${tesp.origin}${one}`)).headers.get('etag');
    const conditional = etag ? await get(tesp.origin, one, TOTAL, { headers: { 'if-none-match': etag }, expectStatus: 304 }) : undefined;
    const creates = post(tesp.origin, `${API}/tasks`, TOTAL);
    const underLoad = await load(tesp.origin, { method: 'GET', path: one, concurrency: 1, until: creates });
    const loadCreates = await creates;
    return { create, poll, conditional, underLoad, loadCreates };
  } finally {
    await tesp.stop();
    removeDir(dataDir);
  }
}

const better = (a, b) => (!a || b.perSecond > a.perSecond ? b : a);
const lowerP99 = (a, b) => (!a || percentile(b.latencies, 99) < percentile(a.latencies, 99) ? b : a);

function best(rounds) {
  return {
    create: rounds.map((r) => r.create).reduce(better, undefined),
    poll: rounds.map((r) => r.poll).reduce(better, undefined),
    conditional: rounds.every((r) => r.conditional) ? rounds.map((r) => r.conditional).reduce(better, undefined) : undefined,
    underLoad: rounds.map((r) => r.underLoad).reduce(lowerP99, undefined),
    loadCreates: rounds.map((r) => r.loadCreates).reduce(better, undefined),
  };
}

const rate = (m) => `${fmt(m.perSecond, 0)} req/s (p50 ${fmt(percentile(m.latencies, 50))} ms, p99 ${fmt(percentile(m.latencies, 99))} ms${m.serverCpuUs ? `; CPU per request: server ${fmt(m.serverCpuUs, 0)} µs, of it the main thread ${fmt(m.mainCpuUs, 0)} µs, load client ${fmt(m.clientCpuUs, 0)} µs` : ''})`;
/** The rate at which the server and the load client together would keep every core busy. */
const ceiling = (m) => (os.cpus().length * 1e6) / (m.serverCpuUs + m.clientCpuUs);

async function run() {
  const done = watchdog('create-throughput', 20 * 60 * 1000);
  const bareCreate = await startBaseline('__ID__');
  const bareGet = await startBaseline(JSON.stringify({ id: '6a1f5e2c-1b7d-4c4e-9a51-0f4a3c1e2d7b', state: 'QUEUED' }));
  const durable = await startDurableBaseline();
  const unflushed = await startDurableBaseline({ synchronous: 'OFF' });
  try {
    const now = [];
    const before = [];
    const bare = { create: undefined, poll: undefined, durable: undefined, unflushed: undefined };
    const creates = async (server) => {
      await post(server.origin, '/tasks', WARMUP);
      return withCpu(server.pid, () => post(server.origin, '/tasks', TOTAL));
    };
    for (let round = 0; round < ROUNDS; round++) {
      if (BEFORE) before.push(await measureTesp(BEFORE));
      now.push(await measureTesp(undefined));
      bare.create = better(bare.create, await creates(bareCreate));
      bare.durable = better(bare.durable, await creates(durable));
      bare.unflushed = better(bare.unflushed, await creates(unflushed));
      await get(bareGet.origin, '/', WARMUP);
      bare.poll = better(bare.poll, await get(bareGet.origin, '/', TOTAL));
    }
    const ours = best(now);
    const old = BEFORE ? best(before) : undefined;
    const versus = (m, key) => (old ? `; before (${BEFORE}): ${rate(old[key])}, ${fmt(old[key].perSecond / m.perSecond, 2)} × bare` : '');
    const results = [
      {
        name: `create (POST /tasks, ${TOTAL} requests, concurrency ${CONCURRENCY}, best of ${ROUNDS})`,
        tesp: rate(ours.create),
        baseline: `bare node:http answering {"id"}: ${rate(bare.create)}; the least durable create (node:http, one row committed with synchronous=FULL, group commit): ${rate(bare.durable)}; the same without fsync (synchronous=OFF): ${rate(bare.unflushed)}${versus(bare.create, 'create')}`,
        ratio:
          `${fmt(ours.create.perSecond / bare.create.perSecond, 2)} × bare (the durable floor is ${fmt(bare.durable.perSecond / bare.create.perSecond, 2)} × bare, ` +
          `${fmt(bare.unflushed.perSecond / bare.create.perSecond, 2)} × without fsync); ${fmt(ours.create.perSecond / bare.durable.perSecond, 2)} × the durable floor; ` +
          `with all ${os.cpus().length} cores busy, the CPU per request would allow bare ${fmt(ceiling(bare.create), 0)}, the floor ${fmt(ceiling(bare.durable), 0)}, tesp ${fmt(ceiling(ours.create), 0)} req/s`,
      },
      {
        name: `poll (GET one task at MINIMAL, ${TOTAL} requests, concurrency ${CONCURRENCY}, best of ${ROUNDS})`,
        tesp: rate(ours.poll) + (ours.conditional ? `; with If-None-Match (304): ${rate(ours.conditional)}` : ''),
        baseline: `bare node:http answering {"id","state"}: ${rate(bare.poll)}${versus(bare.poll, 'poll')}`,
        ratio: `${fmt(ours.poll.perSecond / bare.poll.perSecond, 2)} × bare` + (ours.conditional ? `, ${fmt(ours.conditional.perSecond / bare.poll.perSecond, 2)} × bare with 304` : ''),
      },
      {
        name: `poll while creating (one poller at MINIMAL while ${TOTAL} creates run at concurrency ${CONCURRENCY}, lowest p99 of ${ROUNDS})`,
        tesp: `GET p99 ${fmt(percentile(ours.underLoad.latencies, 99), 2)} ms, p50 ${fmt(percentile(ours.underLoad.latencies, 50), 2)} ms over ${ours.underLoad.latencies.length} GETs; creates meanwhile ${fmt(ours.loadCreates.perSecond, 0)} req/s`,
        baseline: old
          ? `before: GET p99 ${fmt(percentile(old.underLoad.latencies, 99), 2)} ms, p50 ${fmt(percentile(old.underLoad.latencies, 50), 2)} ms; creates meanwhile ${fmt(old.loadCreates.perSecond, 0)} req/s`
          : 'set BENCH_BEFORE to a built older checkout to measure it in the same run',
        ratio: old ? `p99 ${fmt(percentile(old.underLoad.latencies, 99) / percentile(ours.underLoad.latencies, 99), 1)} × lower than before` : 'target: p99 below 5 ms',
      },
    ];
    for (const result of results) console.log(JSON.stringify(result));
    return results;
  } finally {
    await bareCreate.stop();
    await bareGet.stop();
    await durable.stop();
    await unflushed.stop();
    done();
  }
}

module.exports = { run };
if (require.main === module) run().catch((err) => { console.error(err); process.exit(1); });
