// On a real mongod (TESP_TEST_MONGO_URL): with 100 000 tasks stored, every list filter and the claim are served by
// an index (explain() shows an IXSCAN and no collection scan). The wire server never uses indexes, so this runs only
// against a real server, and skips saying so otherwise (under CI too: no mongod exists there).
import { randomUUID } from 'node:crypto';
import mongoose from 'mongoose';
import { createLogger } from '../../src/common/logger';
import { TesState } from '../../src/domain/tes-task';
import { listFilter, toDocument } from '../../src/persistence/mongodb/mongo-task-mapping';
import { MongoTaskRepository } from '../../src/persistence/mongodb/mongo-task.repository';
import { describeWhenConfigured } from '../support/service-check';

const TASKS = 100_000;

describeWhenConfigured('MongoDB indexes under 100 000 tasks', 'TESP_TEST_MONGO_URL', 'a real MongoDB server (mongodb://host:port/db)', (base) => {
  let url: string;
  let repo: MongoTaskRepository;
  let connection: mongoose.Connection;

  beforeAll(async () => {
    const u = new URL(base);
    u.pathname = `/tesp_indexes_${randomUUID().slice(0, 8)}`;
    url = u.toString();
    repo = new MongoTaskRepository({ url, serverSelectionTimeoutMs: 5000 }, createLogger('silent'));
    await repo.connect();
    connection = await mongoose.createConnection(url).asPromise();
    const states = [TesState.COMPLETE, TesState.EXECUTOR_ERROR, TesState.QUEUED, TesState.RUNNING];
    for (let start = 0; start < TASKS; start += 5000) {
      const docs = Array.from({ length: 5000 }, (_, i) => {
        const n = start + i;
        return toDocument({ id: `t-${n}`, name: `sample-${n % 1000}-${n}`, state: states[n % 4], creation_time: '2026-01-01T00:00:00Z', executors: [], tags: { project: `p${n % 50}` }, logs: [] }, `user-${n % 20}`);
      });
      await connection.collection('tasks').insertMany(docs);
    }
  }, 600_000);

  afterAll(async () => {
    await connection?.dropDatabase();
    await connection?.close();
    await repo?.close();
  });

  /** The winning plan's stages, flattened. */
  async function stages(filter: Record<string, unknown>, sort: Record<string, 1 | -1>): Promise<string[]> {
    const plan = (await connection.collection('tasks').find(filter).sort(sort).limit(257).explain('queryPlanner')) as any;
    const out: string[] = [];
    const walk = (stage: any) => {
      if (!stage) return;
      out.push(stage.stage);
      walk(stage.inputStage);
      for (const s of stage.inputStages ?? []) walk(s);
    };
    walk(plan.queryPlanner.winningPlan.queryPlan ?? plan.queryPlanner.winningPlan);
    return out;
  }

  it.each([
    ['no filter', {}],
    ['state', { state: TesState.EXECUTOR_ERROR }],
    ['name prefix', { namePrefix: 'sample-42-' }],
    ['tag key', { tags: [{ key: 'project' }] }],
    ['tag key and value', { tags: [{ key: 'project', value: 'p7' }] }],
  ])('serves a list with %s from an index', async (_label, query) => {
    const used = await stages(listFilter({ all: true }, { tags: [], ...query }), { _id: -1 });
    expect(used).toContain('IXSCAN');
    expect(used).not.toContain('COLLSCAN');
  });

  it.each([
    ['no other filter', {}],
    ['state', { state: TesState.EXECUTOR_ERROR }],
    ['tag key and value', { tags: [{ key: 'project', value: 'p7' }] }],
  ])('serves an owner\'s list with %s from an index', async (_label, query) => {
    const used = await stages(listFilter({ all: false, owner: 'user-3' }, { tags: [], ...query }), { _id: -1 });
    expect(used).toContain('IXSCAN');
    expect(used).not.toContain('COLLSCAN');
  });

  it('serves a claim and the expired-lease scan from an index', async () => {
    expect(await stages({ state: TesState.QUEUED }, { _id: 1 })).toContain('IXSCAN');
    expect(await stages({ 'control.lease.holder': 'h', 'control.lease.until': { $gt: 0 } }, { _id: 1 })).not.toContain('COLLSCAN');
  });
});
