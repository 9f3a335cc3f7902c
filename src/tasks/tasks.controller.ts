import { Body, Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { TasksService } from './tasks.service';

/** TES task endpoints, under /ga4gh/tes/v1 and the /v1 alias that Nextflow, Cromwell and Pulsar use. */
@Controller(['ga4gh/tes/v1', 'v1'])
export class TasksController {
  constructor(private readonly tasks: TasksService) {}

  @Post('tasks')
  @HttpCode(200)
  create(@Body() body: unknown) {
    return this.tasks.create(body);
  }

  @Get('tasks')
  list(@Query() query: Record<string, unknown>) {
    return this.tasks.list(query);
  }

  @Get('tasks/:id')
  get(@Param('id') id: string, @Query() query: Record<string, unknown>) {
    return this.tasks.get(id, query);
  }

  @Post('tasks/:id\\:cancel')
  @HttpCode(200)
  cancel(@Param('id') id: string) {
    return this.tasks.cancel(id);
  }
}
