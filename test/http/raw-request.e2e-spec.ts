// A route that streams its upload gets the raw request, unread and unlimited by server.body_limit_mb, whatever
// the content type (multipart/form-data as Pulsar's client sends files, octet-stream, none), while JSON routes in
// the same app keep their parsing and limit.
import { Body, Controller, HttpCode, Module, Post, Put } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createHttpApp } from '../../src/api-docs/setup-http-app';
import { RawRequest } from '../../src/common/raw-request.decorator';
import { loadSettings } from '../../src/config/settings.loader';

@Controller('files')
class UploadController {
  @Put('upload')
  @HttpCode(200)
  async upload(@RawRequest() req: IncomingMessage) {
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of req) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    return { bytes, sha256: hash.digest('hex'), content_type: req.headers['content-type'] ?? null };
  }

  @Post('json')
  @HttpCode(200)
  json(@Body() body: unknown) {
    return { body: body ?? null };
  }
}

@Module({ controllers: [UploadController] })
class UploadModule {}

describe('raw request streams', () => {
  let app: NestFastifyApplication;
  let root: string;
  const LIMIT_MB = 16;
  const big = Buffer.alloc((LIMIT_MB + 4) * 1024 * 1024, 7);
  const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

  beforeAll(async () => {
    const settings = loadSettings({ env: {}, overrides: { 'server.body_limit_mb': LIMIT_MB, 'logging.level': 'silent' } });
    app = await createHttpApp(UploadModule, settings, false);
    await app.listen(0, '127.0.0.1');
    root = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
  });

  afterAll(async () => {
    await app?.close();
  });

  it.each([['application/octet-stream'], ['text/plain'], ['application/x-unknown']])('passes a %s body beyond the JSON limit through whole', async (type) => {
    const res = await fetch(`${root}/files/upload`, { method: 'PUT', body: big, headers: { 'content-type': type } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ bytes: big.length, sha256: sha256(big), content_type: type });
  });

  it('passes a multipart/form-data body through unparsed, boundary and all', async () => {
    const form = new FormData();
    form.append('file', new Blob([big]), 'big.bin');
    const encoded = new Response(form);
    const type = encoded.headers.get('content-type')!;
    const raw = Buffer.from(await encoded.arrayBuffer());
    const res = await fetch(`${root}/files/upload`, { method: 'PUT', body: raw, headers: { 'content-type': type } });
    expect(await res.json()).toEqual({ bytes: raw.length, sha256: sha256(raw), content_type: type });
  });

  it('passes a body without a content type through', async () => {
    const res = await fetch(`${root}/files/upload`, { method: 'PUT', body: new Blob([big]).stream(), duplex: 'half' } as RequestInit);
    expect(((await res.json()) as { bytes: number }).bytes).toBe(big.length);
  });

  it('still parses JSON on other routes and refuses JSON beyond the limit', async () => {
    const small = await fetch(`${root}/files/json`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } });
    expect(await small.json()).toEqual({ body: { a: 1 } });
    const tooLarge = await fetch(`${root}/files/json`, { method: 'POST', body: JSON.stringify({ x: big.toString('latin1') }), headers: { 'content-type': 'application/json' } });
    expect(tooLarge.status).toBe(413);
  });
});
