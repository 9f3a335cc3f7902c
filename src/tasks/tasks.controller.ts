import { Body, Controller, Get, HttpCode, NotFoundException, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CurrentPrincipal } from '../auth/current-principal.decorator';
import { sendWithEtag } from '../common/etag-reply';
import type { Principal } from '../domain/principal';
import { TasksService } from './tasks.service';

/** TES task endpoints, under /ga4gh/tes/v1 and the /v1 alias that Nextflow, Cromwell and Pulsar use. */
@Controller(['ga4gh/tes/v1', 'v1'])
export class TasksController {
  constructor(private readonly tasks: TasksService) {}

  @Post('tasks')
  @HttpCode(200)
  create(@Body() body: unknown, @CurrentPrincipal() caller: Principal) {
    return this.tasks.create(body, caller);
  }

  @Get('tasks')
  list(@Query() query: Record<string, unknown>, @CurrentPrincipal() caller: Principal) {
    return this.tasks.list(query, caller);
  }

  /** With an ETag: pollers that send If-None-Match get 304 while the task is as they last saw it. */
  @Get('tasks/:id')
  async get(@Param('id') id: string, @Query() query: Record<string, unknown>, @CurrentPrincipal() caller: Principal, @Req() req: FastifyRequest, @Res() reply: FastifyReply) {
    sendWithEtag(req, reply, await this.tasks.get(id, query, caller));
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
