import { Controller, Get, HttpCode, NotFoundException, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuthenticatedRequest, CurrentPrincipal, principalOf } from '../auth/current-principal.decorator';
import { sendWithEtag } from '../common/etag-reply';
import type { Principal } from '../domain/principal';
import { TasksService } from './tasks.service';

/**
 * TES task endpoints, under /ga4gh/tes/v1 and the /v1 alias that Nextflow, Cromwell and Pulsar use. Create and get,
 * the routes clients call thousands of times, take the request whole: each parameter Nest resolves costs about a
 * microsecond of every request.
 */
@Controller(['ga4gh/tes/v1', 'v1'])
export class TasksController {
  constructor(private readonly tasks: TasksService) {}

  @Post('tasks')
  @HttpCode(200)
  create(@Req() req: AuthenticatedRequest) {
    return this.tasks.create(req.body, principalOf(req));
  }

  @Get('tasks')
  list(@Query() query: Record<string, unknown>, @CurrentPrincipal() caller: Principal) {
    return this.tasks.list(query, caller);
  }

  /** With an ETag: pollers that send If-None-Match get 304 while the task is as they last saw it. */
  @Get('tasks/:id')
  async get(@Req() req: AuthenticatedRequest, @Res() reply: FastifyReply) {
    const { id } = req.params as { id: string };
    sendWithEtag(req, reply, await this.tasks.get(id, req.query as Record<string, unknown>, principalOf(req)));
  }

  // `::` is a literal colon in Fastify's router. The router also takes an escaped colon (%3A) for one, which is
  // not the cancel route but part of an id: that is a route not found, as it was under Express.
  @Post('tasks/:id(^[^:]+)::cancel')
  @HttpCode(200)
  cancel(@Param('id') id: string, @CurrentPrincipal() caller: Principal, @Req() req: FastifyRequest) {
    if (!/:cancel(\?|$)/.test(req.url)) throw new NotFoundException();
    return this.tasks.cancel(id, caller);
  }
}
