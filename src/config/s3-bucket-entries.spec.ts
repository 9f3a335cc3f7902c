import { parseBucketEntries, S3Endpoint } from './s3-bucket-entries';

const defaults: S3Endpoint = { endpoint: 'http://127.0.0.1:7480', region: 'us-east-1', accessKeyId: 'DEFAULTKEY', secretAccessKey: 'default-secret', forcePathStyle: true };

describe('storage.s3.buckets entries', () => {
  it('gives each bucket its endpoint, credentials, region and addressing, the rest from the defaults', () => {
    const parsed = parseBucketEntries(
      [
        'results=https://AKIA1:se%2Fcret@s3.eu-west-1.amazonaws.com?region=eu-west-1&force_path_style=false',
        'scratch.data=http://127.0.0.1:9000',
      ],
      defaults,
    );
    expect(parsed.get('results')).toEqual({ endpoint: 'https://s3.eu-west-1.amazonaws.com', region: 'eu-west-1', accessKeyId: 'AKIA1', secretAccessKey: 'se/cret', forcePathStyle: false });
    expect(parsed.get('scratch.data')).toEqual({ endpoint: 'http://127.0.0.1:9000', region: 'us-east-1', accessKeyId: 'DEFAULTKEY', secretAccessKey: 'default-secret', forcePathStyle: true });
  });

  it.each([
    ['no name', 'https://k:s3cr3t-1@host', /^storage\.s3\.buckets\[0\] is not bucket=value$/],
    ['a bad bucket name', 'Bad_Bucket=https://k:s3cr3t-1@host', /^storage\.s3\.buckets: "Bad_Bucket" is not a valid bucket name$/],
    ['no URL', 'b1x=k:s3cr3t-1', /the entry for "b1x" has the scheme "k:"; the endpoint must be http\(s\)/],
    ['not a URL', 'b1x=not a url s3cr3t-1', /the entry for "b1x" is not bucket=http\(s\):\/\/\[access:secret@\]host/],
    ['another scheme', 'b1x=ftp://k:s3cr3t-1@host', /the entry for "b1x" has the scheme "ftp:"/],
    ['a path', 'b1x=https://k:s3cr3t-1@host/b1x', /the entry for "b1x" has a path \(https:\/\/\*\*\*@host\/b1x\)/],
    ['a key without a secret', 'b1x=https://k@host', /has an access key without a secret/],
    ['an unknown option', 'b1x=https://k:s3cr3t-1@host?regoin=x', /has the unknown option "regoin" \(known: region, force_path_style\)/],
    ['a bad flag', 'b1x=https://k:s3cr3t-1@host?force_path_style=yes', /has force_path_style=yes; use true or false/],
  ])('refuses an entry with %s, without the secret', (_what, entry, message) => {
    const parse = () => parseBucketEntries([entry], defaults);
    expect(parse).toThrow(message);
    expect(parse).toThrow(/^(?!.*s3cr3t)/);
  });

  it('refuses a bucket given twice', () => {
    expect(() => parseBucketEntries(['b1x=http://a', 'b1x=http://b'], defaults)).toThrow(/^storage\.s3\.buckets: "b1x" is given twice$/);
  });
});
