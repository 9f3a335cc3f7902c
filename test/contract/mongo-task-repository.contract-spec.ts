// The TaskRepository contract on MongoDB: against a real mongod when TESP_TEST_MONGO_URL names one (a database
// URL; each harness uses a database of its own on that server), otherwise against the test-only wire-protocol
// server (test/mongo-wire, started by docker/start-mongo-wire.sh on 127.0.0.1:27027), which enforces no unique
// index: the duplicate-id cases then skip, saying so.
import { randomUUID } from 'node:crypto';
import mongoose from 'mongoose';
import { createLogger } from '../../src/common/logger';
import { MongoTaskRepository } from '../../src/persistence/mongodb/mongo-task.repository';
import { MONGO_WIRE, mongoWireAvailable } from '../support/mongo-wire';
import { describeWhen } from '../support/service-check';
import { describeTaskRepositoryContract, StoreOptions } from './task-repository.contract';

const realMongo = process.env.TESP_TEST_MONGO_URL;

/** The URL of a fresh database on the server under test. */
function databaseUrl(): string {
  const db = `tesp_contract_${randomUUID().slice(0, 8)}`;
  if (!realMongo) return MONGO_WIRE.url(db);
  const url = new URL(realMongo);
  url.pathname = `/${db}`;
  return url.toString();
}

async function openRepository(url: string, options: StoreOptions = {}): Promise<MongoTaskRepository> {
  const repo = new MongoTaskRepository({ url, serverSelectionTimeoutMs: 5000, fullPageBytes: options.fullPageBytes }, createLogger('silent'));
  await repo.connect();
  return repo;
}

describeWhen(
  realMongo ? 'MongoDB store (real mongod)' : 'MongoDB store (wire-protocol server)',
  Boolean(realMongo) || mongoWireAvailable(),
  'no MongoDB wire server answers on 127.0.0.1:27027 (run npm --prefix test/mongo-wire ci && docker/start-mongo-wire.sh) and TESP_TEST_MONGO_URL is not set',
  () => {
    describeTaskRepositoryContract(
      realMongo ? 'MongoDB' : 'MongoDB wire server',
      async (options = {}) => {
        const url = databaseUrl();
        let repo = await openRepository(url, options);
        const others: MongoTaskRepository[] = [];
        return {
          repo,
          reopen: async () => {
            await repo.close();
            repo = await openRepository(url, options);
            return repo;
          },
          openSecond: async () => {
            const second = await openRepository(url);
            others.push(second);
            return second;
          },
          cleanup: async () => {
            await repo.close();
            for (const other of others) await other.close();
            const admin = await mongoose.createConnection(url, { serverSelectionTimeoutMS: 5000 }).asPromise();
            await admin.dropDatabase().catch(() => undefined);
            await admin.close();
          },
        };
      },
      realMongo ? {} : { uniqueIndex: 'the wire-protocol server enforces no unique index; runs with TESP_TEST_MONGO_URL set to a real mongod' },
    );
  },
);
