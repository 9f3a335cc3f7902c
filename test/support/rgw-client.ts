// An S3 client for the test Ceph RGW (docker/start-ceph-rgw.sh), and buckets made and removed through it.
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { RGW } from './service-check';

export function rgwClient(): S3Client {
  return new S3Client({
    endpoint: RGW.endpoint,
    region: RGW.region,
    forcePathStyle: true,
    credentials: { accessKeyId: RGW.accessKeyId, secretAccessKey: RGW.secretAccessKey },
    // Streamed bodies with flexible checksums go out aws-chunked, which RGW refuses.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** A new bucket with a name unique to this process and moment. */
export async function newBucket(client: S3Client, prefix = 'tesp'): Promise<string> {
  const bucket = `${prefix}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

/** Deletes every object, then the bucket: RGW keeps objects in memory, so tests leave nothing behind. */
export async function dropBucket(client: S3Client, bucket: string): Promise<void> {
  const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
  for (const object of listed.Contents ?? []) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: object.Key }));
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
}
