import { Controller, Get, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { PublicRoute } from '../auth/public-route.decorator';
import Busboy from 'busboy';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { COMPUTE_BACKEND, ComputeBackend, StagingRelay } from '../compute/compute-backend';
import { DomainError, ErrorCode } from '../domain/domain-error';

// tesp's staging URLs for runners that fetch inputs and post outputs themselves (Pulsar over AMQP): raw streams
// both ways, never a whole file in memory or on tesp's disk. Not part of the TES API (absent from /docs).
//   GET  /tesp/relay/<task>/<attempt>/<key>/inputs/<index>[?file=<file below a directory input>]
//   POST /tesp/relay/<task>/<attempt>/<key>/files?path=<client path>&file_type=<type>   multipart, part `file`

/** The Node request under whichever HTTP adapter serves the app. */
function raw<T>(value: unknown): T {
  return ((value as { raw?: T }).raw ?? value) as T;
}

/** The Node response, taken over from the adapter (Fastify must not answer a second time). */
function rawResponse(value: unknown): ServerResponse {
  (value as { hijack?: () => void }).hijack?.();
  return raw<ServerResponse>(value);
}

// Runners carry no user credentials: the key in the path (an HMAC of task and attempt) is the authorisation.
@PublicRoute()
@ApiExcludeController()
@Controller('tesp/relay/:taskId/:attempt/:key')
export class StagingRelayController {
  constructor(@Inject(COMPUTE_BACKEND) private readonly backend: ComputeBackend) {}

  private get relay(): StagingRelay {
    if (!this.backend.stagingRelay) throw new DomainError(ErrorCode.NotFound, 'this tesp has no runners that use staging URLs');
    return this.backend.stagingRelay;
  }

  @Get('inputs/:index')
  fetchInput(@Param() params: RelayParams, @Query('file') file: unknown, @Res() res: unknown): Promise<void> {
    return this.sendInput(params, typeof file === 'string' ? file : '', res);
  }

  @Post('files')
  async receive(@Param() params: RelayParams, @Query('path') clientPath: unknown, @Req() req: unknown, @Res() res: unknown): Promise<void> {
    if (typeof clientPath !== 'string' || clientPath === '') throw new DomainError(ErrorCode.InvalidArgument, 'the query parameter "path" is required');
    const attempt = attemptOf(params.attempt);
    const request = raw<IncomingMessage>(req);
    const stored = await new Promise<{ stored: string }>((resolve, reject) => {
      let parser: Busboy.Busboy;
      try {
        parser = Busboy({ headers: request.headers, limits: { files: 1, fields: 20 } });
      } catch {
        reject(new DomainError(ErrorCode.InvalidArgument, 'the body must be multipart/form-data with a part named "file"'));
        request.resume();
        return;
      }
      let handled = false;
      parser.on('file', (name: string, file: Readable) => {
        if (name !== 'file' || handled) {
          file.resume();
          return;
        }
        handled = true;
        this.relay.receiveFile(params.taskId, attempt, params.key, clientPath, file).then(resolve, (err: unknown) => {
          file.resume();
          reject(err);
        });
      });
      parser.on('error', () => reject(new DomainError(ErrorCode.InvalidArgument, 'the multipart body is malformed')));
      parser.on('close', () => {
        if (!handled) reject(new DomainError(ErrorCode.InvalidArgument, 'the body has no part named "file"'));
      });
      request.pipe(parser);
    });
    const response = rawResponse(res);
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stored));
  }

  /** Errors before the first byte go through the one exception filter; the answer itself is streamed raw. */
  private async sendInput(params: RelayParams, relative: string, reply: unknown): Promise<void> {
    const index = Number(params.index);
    if (!/^\d{1,6}$/.test(params.index)) throw new DomainError(ErrorCode.NotFound, `no input ${JSON.stringify(params.index.slice(0, 20))}`);
    const { body, size } = await this.relay.openInput(params.taskId, attemptOf(params.attempt), params.key, index, relative);
    const res = rawResponse(reply);
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(size !== undefined ? { 'content-length': String(size) } : {}) });
    await pipeline(body, res).catch(() => res.destroy());
  }
}

interface RelayParams {
  taskId: string;
  attempt: string;
  key: string;
  index: string;
}

function attemptOf(text: string): number {
  if (!/^\d{1,6}$/.test(text)) throw new DomainError(ErrorCode.Forbidden, 'this staging URL is not valid: wrong attempt');
  return Number(text);
}
