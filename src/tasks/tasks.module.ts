import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { HttpExceptionFilter } from '../common/http-exception.filter';
import { ComputeModule } from '../compute/compute.module';
import { PersistenceModule } from '../persistence/persistence.module';
import { SchedulerModule } from '../scheduler/scheduler.module';
import { StorageModule } from '../storage/storage.module';
import { StagingRelayController } from './staging-relay.controller';
import { TasksController } from './tasks.controller';
import { TasksService } from './tasks.service';

@Module({
  imports: [PersistenceModule, StorageModule, ComputeModule, SchedulerModule],
  controllers: [TasksController, StagingRelayController],
  // The one error filter for the whole application (every route, unknown ones included).
  providers: [TasksService, { provide: APP_FILTER, useClass: HttpExceptionFilter }],
})
export class TasksModule {}
