// Pins the test-only MongoDB wire server (CongoDB from @push.rocks/smartmongo 2.2.0, test/mongo-wire/) to what the
// Mongo task store relies on, through mongoose 8 and the real driver over TCP: CRUD, a compare-and-set with
// findOneAndUpdate that exactly one of many concurrent updaters wins, sort + limit and keyset pages, anchored
// $regex prefixes, $exists, counts, and the driver reconnecting after the server restarts. It also pins the gaps
// the store's tests must not lean on (no unique secondary indexes, ObjectId-only _id, no transactions): if a later
// CongoDB closes one, its test here fails and tells us.
import mongoose, { Schema, Types, type Connection } from 'mongoose';
import { MONGO_WIRE, MongoWireProcess, mongoWireAvailable, mongoWireInstalled } from '../support/mongo-wire';
import { describeWhen } from '../support/service-check';

const MISSING = 'no MongoDB wire server on 127.0.0.1:27027 (npm ci --prefix test/mongo-wire; ./docker/start-mongo-wire.sh)';
const CONNECT = { serverSelectionTimeoutMS: 5000, heartbeatFrequencyMS: 500 };

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface TaskDoc {
  name: string;
  state: string;
  version: number;
  owner?: number;
  created: number;
  lease?: string;
}

const taskSchema = new Schema<TaskDoc>(
  {
    name: { type: String, required: true },
    state: { type: String, required: true },
    version: { type: Number, required: true },
    owner: Number,
    created: { type: Number, required: true },
    lease: String,
  },
  { versionKey: false },
);

describeWhen('MongoDB wire server (CongoDB) as the Mongo store sees it', mongoWireAvailable(), MISSING, () => {
  let conn: Connection;
  const dbName = `wire-sanity-${process.pid}-${Date.now()}`;

  beforeAll(async () => {
    conn = await mongoose.createConnection(MONGO_WIRE.url(dbName), CONNECT).asPromise();
  });

  afterAll(async () => {
    await conn?.dropDatabase().catch(() => undefined);
    await conn?.close();
  });

  const model = (collection: string) => conn.model<TaskDoc>(collection, taskSchema, collection);

  it('inserts, finds, updates and deletes through mongoose', async () => {
    const Task = model('crud');
    const created = await Task.create({ name: 'a', state: 'QUEUED', version: 0, created: 1 });
    expect(created._id).toBeInstanceOf(Types.ObjectId);
    const found = await Task.findById(created._id).lean();
    expect(found).toMatchObject({ name: 'a', state: 'QUEUED', version: 0 });
    expect(String(found?._id)).toBe(String(created._id));
    const updated = await Task.updateOne({ _id: created._id }, { $set: { state: 'RUNNING' }, $inc: { version: 1 } });
    expect(updated.modifiedCount).toBe(1);
    expect(await Task.findById(created._id).lean()).toMatchObject({ state: 'RUNNING', version: 1 });
    expect(await Task.countDocuments({ state: 'RUNNING' })).toBe(1);
    expect((await Task.deleteOne({ _id: created._id })).deletedCount).toBe(1);
    expect(await Task.findById(created._id).lean()).toBeNull();
  });

  it('lets exactly one of 20 concurrent findOneAndUpdate compare-and-sets win', async () => {
    const Task = model('cas');
    const { _id } = await Task.create({ name: 'claim-me', state: 'QUEUED', version: 0, created: 1 });
    // Each updater on its own connection, so the 20 commands reach the server on 20 sockets at once.
    const conns = await Promise.all(Array.from({ length: 20 }, () => mongoose.createConnection(MONGO_WIRE.url(dbName), CONNECT).asPromise()));
    try {
      const results = await Promise.all(
        conns.map((c, owner) =>
          c
            .model<TaskDoc>('cas', taskSchema, 'cas')
            .findOneAndUpdate({ _id, state: 'QUEUED', version: 0 }, { $set: { state: 'INITIALIZING', owner }, $inc: { version: 1 } }, { new: true })
            .lean(),
        ),
      );
      const winners = results.filter((r) => r !== null);
      expect(winners).toHaveLength(1);
      expect(winners[0]).toMatchObject({ state: 'INITIALIZING', version: 1 });
      const stored = await Task.findById(_id).lean();
      expect(stored).toMatchObject({ state: 'INITIALIZING', version: 1, owner: winners[0]?.owner });
      // The loser's view: the same filter now matches nothing, and the pre-image option returns the old document.
      expect(await Task.findOneAndUpdate({ _id, version: 0 }, { $inc: { version: 1 } }).lean()).toBeNull();
      const before = await Task.findOneAndUpdate({ _id, version: 1 }, { $inc: { version: 1 } }, { new: false }).lean();
      expect(before?.version).toBe(1);
      expect((await Task.findById(_id).lean())?.version).toBe(2);
    } finally {
      await Promise.all(conns.map((c) => c.close()));
    }
  });

  it('sorts with a limit and pages by a key', async () => {
    const Task = model('paging');
    const createdOrder = [5, 2, 9, 1, 7, 3, 8, 6, 4, 0];
    await Task.insertMany(createdOrder.map((created) => ({ name: `t${created}`, state: created % 2 ? 'QUEUED' : 'COMPLETE', version: 0, created })));
    const newest = await Task.find().sort({ created: -1 }).limit(3).lean();
    expect(newest.map((t) => t.created)).toEqual([9, 8, 7]);
    const queued = await Task.find({ state: 'QUEUED' }).sort({ created: 1 }).limit(2).lean();
    expect(queued.map((t) => t.created)).toEqual([1, 3]);
    // Keyset pages by _id: every document once, in _id order.
    const seen: number[] = [];
    let after: Types.ObjectId | undefined;
    for (;;) {
      const page = await Task.find(after ? { _id: { $gt: after } } : {}).sort({ _id: 1 }).limit(4).lean();
      if (page.length === 0) break;
      seen.push(...page.map((t) => t.created));
      after = page[page.length - 1]._id;
    }
    expect(seen).toEqual(createdOrder);
    // Keyset by (created desc, _id desc), the shape of a newest-first list.
    const all = await Task.find().sort({ created: -1, _id: -1 }).lean();
    const cut = all[3];
    const next = await Task.find({ $or: [{ created: { $lt: cut.created } }, { created: cut.created, _id: { $lt: cut._id } }] })
      .sort({ created: -1, _id: -1 })
      .limit(3)
      .lean();
    expect(next.map((t) => t.created)).toEqual([5, 4, 3]);
  });

  it('matches an anchored, escaped $regex prefix and nothing that only looks like it', async () => {
    const Task = model('prefix');
    const names = ['a.b/x', 'a.b/y', 'aXb/z', 'a.b', 'za.b/w', 'a.b/(1)+'];
    await Task.insertMany(names.map((name, created) => ({ name, state: 'QUEUED', version: 0, created })));
    const prefix = 'a.b/';
    const hits = await Task.find({ name: { $regex: `^${escapeRegex(prefix)}` } }).sort({ name: 1 }).lean();
    expect(hits.map((t) => t.name)).toEqual(['a.b/(1)+', 'a.b/x', 'a.b/y']);
    const special = await Task.find({ name: { $regex: `^${escapeRegex('a.b/(1)+')}` } }).lean();
    expect(special.map((t) => t.name)).toEqual(['a.b/(1)+']);
    // A RegExp object travels as a BSON regex; same answer.
    expect(await Task.countDocuments({ name: new RegExp(`^${escapeRegex(prefix)}`) })).toBe(3);
  });

  it('filters with $exists', async () => {
    const Task = model('exists');
    await Task.insertMany([
      { name: 'free', state: 'QUEUED', version: 0, created: 1 },
      { name: 'held', state: 'RUNNING', version: 0, created: 2, lease: 'token-1' },
    ]);
    expect((await Task.find({ lease: { $exists: false } }).lean()).map((t) => t.name)).toEqual(['free']);
    expect((await Task.find({ lease: { $exists: true } }).lean()).map((t) => t.name)).toEqual(['held']);
    await Task.updateOne({ name: 'held' }, { $unset: { lease: '' } });
    expect(await Task.countDocuments({ lease: { $exists: false } })).toBe(2);
  });

  describe('documented gaps (a failure here means CongoDB now does more: revisit the store tests)', () => {
    it('does NOT enforce a unique secondary index, though it creates and lists it', async () => {
      const schema = new Schema({ key: { type: String, required: true, unique: true } }, { versionKey: false, autoIndex: false });
      const Keyed = conn.model('unique', schema, 'unique');
      await Keyed.createIndexes();
      const indexes = await conn.collection('unique').indexes();
      expect(indexes).toEqual(expect.arrayContaining([expect.objectContaining({ key: { key: 1 }, unique: true })]));
      await Keyed.create({ key: 'same' });
      await Keyed.create({ key: 'same' }); // a real mongod answers E11000 duplicate key here
      expect(await Keyed.countDocuments({ key: 'same' })).toBe(2);
    });

    it('accepts only ObjectId _id: a free-form string fails (as code 11000!), a 24-hex string or a number becomes an ObjectId', async () => {
      const raw = conn.collection('string-ids');
      // The ObjectId constructor's error, sent back with the duplicate-key code: do not read 11000 as "exists" here.
      await expect(raw.insertOne({ _id: 'task-1' as never, n: 1 })).rejects.toMatchObject({ code: 11000, message: expect.stringContaining('24 character hex string') });
      expect(await raw.countDocuments({ n: 1 })).toBe(0);
      const hex = '0123456789abcdef01234567';
      await raw.insertOne({ _id: hex as never, n: 2 });
      expect(await raw.findOne({ _id: hex as never })).toBeNull(); // a real mongod keeps the string
      const stored = await raw.findOne({ n: 2 });
      expect(stored?._id).toBeInstanceOf(Types.ObjectId);
      expect(String(stored?._id)).toBe(hex);
      await raw.insertOne({ _id: 42 as never, n: 3 });
      expect((await raw.findOne({ n: 3 }))?._id).toBeInstanceOf(Types.ObjectId); // 42 taken as the ObjectId's seconds
    });

    it('ignores positional updates and arrayFilters (the matched element stays as it was)', async () => {
      const raw = conn.collection('arrays');
      await raw.insertOne({ name: 'p', items: [{ k: 'a', v: 1 }, { k: 'b', v: 2 }] });
      const positional = await raw.updateOne({ name: 'p', 'items.k': 'b' }, { $set: { 'items.$.v': 20 } });
      expect(positional.modifiedCount).toBe(0); // a real mongod: 1
      await raw.findOneAndUpdate({ name: 'p' }, { $set: { 'items.$[e].v': 30 } }, { arrayFilters: [{ 'e.k': 'b' }] });
      expect((await raw.findOne({ name: 'p' }))?.items).toEqual([{ k: 'a', v: 1 }, { k: 'b', v: 2 }]);
      // A plain index path does work.
      await raw.updateOne({ name: 'p' }, { $set: { 'items.1.v': 40 } });
      expect((await raw.findOne({ name: 'p' }))?.items).toEqual([{ k: 'a', v: 1 }, { k: 'b', v: 40 }]);
    });

    it('ignores transactions: an aborted transaction\'s write stays', async () => {
      const Task = model('txn');
      const session = await conn.startSession();
      try {
        session.startTransaction();
        await Task.create([{ name: 'in-txn', state: 'QUEUED', version: 0, created: 1 }], { session });
        await session.abortTransaction();
      } finally {
        await session.endSession();
      }
      expect(await Task.countDocuments({ name: 'in-txn' })).toBe(1); // a real replica set would have none
    });
  });
});

describeWhen('MongoDB wire server (CongoDB) restarted under a connected driver', mongoWireInstalled(), 'test/mongo-wire is not installed (npm ci --prefix test/mongo-wire)', () => {
  const server = new MongoWireProcess();
  let conn: Connection | undefined;

  afterAll(async () => {
    await conn?.close(true);
    await server.stop('SIGKILL');
  });

  it('serves its own port, exits 0 on SIGTERM, and the driver reconnects after a restart (memory only: empty again)', async () => {
    await server.start();
    expect(server.port).toBeGreaterThan(0);
    expect(server.port).not.toBe(MONGO_WIRE.port);
    conn = await mongoose.createConnection(server.url('restart'), CONNECT).asPromise();
    const Task = conn.model<TaskDoc>('restart', taskSchema, 'restart');
    await Task.create({ name: 'before', state: 'QUEUED', version: 0, created: 1 });
    expect(await Task.countDocuments()).toBe(1);

    const port = server.port;
    expect(await server.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    await expect(Task.countDocuments().exec()).rejects.toThrow(); // after serverSelectionTimeoutMS
    await server.start();
    expect(server.port).toBe(port);
    // The same mongoose connection, no reconnect by hand: the driver's monitor finds the server again.
    await Task.create({ name: 'after', state: 'QUEUED', version: 0, created: 2 });
    expect((await Task.find().lean()).map((t) => t.name)).toEqual(['after']);

    expect(await server.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    await server.start();
    expect(await Task.countDocuments()).toBe(0);
  });
});
