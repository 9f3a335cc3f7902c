// The S3 backend against a real Ceph RGW on 127.0.0.1:7480 (docker/start-ceph-rgw.sh).
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { DomainError, ErrorCode } from '../../src/domain/domain-error';
import { S3StorageBackend } from '../../src/storage/s3/s3-storage.backend';
import { startCuttingProxy } from '../support/cutting-proxy';
import { dropBucket, newBucket, rgwClient } from '../support/rgw-client';
import { describeWhen, RGW, rgwAvailable } from '../support/service-check';
import { describeStorageBackendContract } from './storage-backend.contract';

const settings = {
  endpoint: RGW.endpoint,
  region: RGW.region,
  access_key_id: RGW.accessKeyId,
  secret_access_key: RGW.secretAccessKey,
  force_path_style: true,
  buckets: [] as string[],
  retries: 2,
  retry_base_ms: 20,
  retry_max_ms: 200,
};

async function readObject(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await res.Body!.transformToByteArray());
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describeWhen('S3 storage against Ceph RGW', rgwAvailable(), `no S3 server answers on ${RGW.endpoint} (run docker/start-ceph-rgw.sh)`, () => {
  describeStorageBackendContract('s3', async () => {
    const client = rgwClient();
    const bucket = await newBucket(client);
    const backend = new S3StorageBackend(settings, { partBytes: 1024 * 1024, parallel: 4 });
    return {
      backend,
      // S3's smallest part, above the 1 MiB setting.
      streamPartBytes: 5 * 1024 * 1024,
      urlFor: (rel) => `s3://${bucket}/${rel}`,
      seed: async (rel, data) => void (await client.send(new PutObjectCommand({ Bucket: bucket, Key: rel, Body: data }))),
      read: (rel) => readObject(client, bucket, rel),
      cleanup: async () => {
        await backend.close();
        await dropBucket(client, bucket);
        client.destroy();
      },
    };
  });

  describe('S3StorageBackend specifics', () => {
    let client: S3Client;
    let bucket: string;
    let local: string;

    beforeAll(async () => {
      client = rgwClient();
      bucket = await newBucket(client);
    });

    afterAll(async () => {
      await dropBucket(client, bucket);
      client.destroy();
    });

    beforeEach(() => {
      local = mkdtempSync(path.join(os.tmpdir(), 'tesp-s3-local-'));
    });

    afterEach(() => rmSync(local, { recursive: true, force: true }));

    it('uploads as multipart with parallel parts and downloads as parallel ranges, byte for byte', async () => {
      const data = randomBytes(17 * 1024 * 1024 + 11);
      writeFileSync(path.join(local, 'big.bin'), data);
      const backend = new S3StorageBackend(settings, { partBytes: 5 * 1024 * 1024, parallel: 3 });
      try {
        expect(await backend.upload(path.join(local, 'big.bin'), `s3://${bucket}/multi/big.bin`)).toEqual({ bytes: data.length, sha256: sha256(data) });
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'multi/big.bin' }));
        expect(head.ETag).toMatch(/-4"$/); // four parts: S3's multipart ETag
        expect(await backend.download(`s3://${bucket}/multi/big.bin`, path.join(local, 'back.bin'))).toBe(data.length);
      } finally {
        await backend.close();
      }
      expect(sha256(readFileSync(path.join(local, 'back.bin')))).toBe(sha256(data));
    });

    it('uploads a stream as multipart with parts cut in order, and reads it back as a stream', async () => {
      const data = randomBytes(16 * 1024 * 1024 + 3);
      const pieces = Array.from({ length: Math.ceil(data.length / 300_000) }, (_, i) => data.subarray(i * 300_000, (i + 1) * 300_000));
      const backend = new S3StorageBackend(settings, { partBytes: 5 * 1024 * 1024, parallel: 2 });
      try {
        expect(await backend.uploadStream(Readable.from(pieces), `s3://${bucket}/streamed/big.bin`)).toEqual({ bytes: data.length, sha256: sha256(data) });
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'streamed/big.bin' }));
        expect(head.ETag).toMatch(/-4"$/);
        const hash = createHash('sha256');
        for await (const chunk of await backend.openRead(`s3://${bucket}/streamed/big.bin`)) hash.update(chunk as Buffer);
        expect(hash.digest('hex')).toBe(sha256(data));
      } finally {
        await backend.close();
      }
    });

    it('recovers from a connection cut in the middle of a download, with the right bytes', async () => {
      const data = randomBytes(12 * 1024 * 1024);
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'cut/data.bin', Body: data }));
      const proxy = await startCuttingProxy(RGW.port);
      const backend = new S3StorageBackend({ ...settings, endpoint: `http://127.0.0.1:${proxy.port}` }, { partBytes: 4 * 1024 * 1024, parallel: 2 });
      try {
        proxy.armCut(2 * 1024 * 1024);
        expect(await backend.download(`s3://${bucket}/cut/data.bin`, path.join(local, 'cut.bin'))).toBe(data.length);
        expect(proxy.cuts()).toBe(1);
      } finally {
        await backend.close();
        await proxy.close();
      }
      expect(sha256(readFileSync(path.join(local, 'cut.bin')))).toBe(sha256(data));
    });

    it('treats a prefix as a DIRECTORY', async () => {
      for (const key of ['tree/a.txt', 'tree/sub/b.txt', 'treehouse/no.txt']) {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));
      }
      const backend = new S3StorageBackend(settings, { partBytes: 1024 * 1024, parallel: 2 });
      try {
        expect(await backend.stat(`s3://${bucket}/tree`)).toEqual({ type: 'DIRECTORY' });
        expect((await backend.list(`s3://${bucket}/tree`)).map((o) => o.relativePath)).toEqual(['a.txt', 'sub/b.txt']);
      } finally {
        await backend.close();
      }
    });

    it('refuses wrong credentials with a clear error and no secret in it', async () => {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'secret.txt', Body: 'x' }));
      const backend = new S3StorageBackend({ ...settings, secret_access_key: 'WRONG-s3cret-KEY' }, { partBytes: 1024 * 1024, parallel: 2 });
      try {
        const err = (await backend.download(`s3://${bucket}/secret.txt`, path.join(local, 's.txt')).catch((e: unknown) => e)) as DomainError;
        expect(err).toBeInstanceOf(DomainError);
        expect(err.code).toBe(ErrorCode.StorageDenied);
        expect(err.message).toMatch(/access denied \((SignatureDoesNotMatch|HTTP 403)\); check storage\.s3 credentials/);
        expect(err.message).not.toContain('WRONG-s3cret-KEY');
      } finally {
        await backend.close();
      }
    });

    it('serves a bucket from its storage.s3.buckets entry: its own endpoint and credentials, not the defaults', async () => {
      // The entry's endpoint is a proxy in front of RGW; the defaults point at a closed port with wrong keys.
      const proxy = await startCuttingProxy(RGW.port);
      const entry = `${bucket}=http://${RGW.accessKeyId}:${RGW.secretAccessKey}@127.0.0.1:${proxy.port}?region=${RGW.region}&force_path_style=true`;
      const backend = new S3StorageBackend(
        { ...settings, endpoint: 'http://127.0.0.1:1', access_key_id: 'NOKEY', secret_access_key: 'WRONG-default-s3cret', retries: 0, buckets: [entry] },
        { partBytes: 5 * 1024 * 1024, parallel: 2 },
      );
      try {
        const data = randomBytes(11 * 1024 * 1024 + 1);
        writeFileSync(path.join(local, 'up.bin'), data);
        await backend.upload(path.join(local, 'up.bin'), `s3://${bucket}/routed/up.bin`);
        expect(sha256(await readObject(client, bucket, 'routed/up.bin'))).toBe(sha256(data));
        await backend.download(`s3://${bucket}/routed/up.bin`, path.join(local, 'down.bin'));
        expect(sha256(readFileSync(path.join(local, 'down.bin')))).toBe(sha256(data));
        expect((await backend.list(`s3://${bucket}/routed`)).map((o) => o.relativePath)).toEqual(['up.bin']);
        expect(backend.locations()).toEqual(['s3://', `s3://${bucket}`]);
        // Another bucket goes to the defaults, which cannot answer.
        await expect(backend.stat('s3://some-other-bucket/x')).rejects.toThrow(/^s3:\/\/some-other-bucket\/x: /);
      } finally {
        await backend.close();
        await proxy.close();
      }
    });

    it('names the storage.s3.buckets entry when its credentials are refused, without the secret', async () => {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'guarded.txt', Body: 'x' }));
      const entry = `${bucket}=http://${RGW.accessKeyId}:WRONG-bucket-s3cret@127.0.0.1:${RGW.port}`;
      const backend = new S3StorageBackend({ ...settings, retries: 0, buckets: [entry] }, { partBytes: 1024 * 1024, parallel: 2 });
      try {
        const err = (await backend.download(`s3://${bucket}/guarded.txt`, path.join(local, 'g.txt')).catch((e: unknown) => e)) as DomainError;
        expect(err.code).toBe(ErrorCode.StorageDenied);
        expect(err.message).toBe(`s3://${bucket}/guarded.txt: access denied (HTTP 403); check the storage.s3.buckets entry for "${bucket}"`);
      } finally {
        await backend.close();
      }
    });
  });
});
