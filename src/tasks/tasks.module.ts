import { Module } from '@nestjs/common';
import { ComputeModule } from '../compute/compute.module';
import { PersistenceModule } from '../persistence/persistence.module';
import { StorageModule } from '../storage/storage.module';
import { TaskLifecycleService } from './task-lifecycle.service';
import { TasksController } from './tasks.controller';
import { TasksService } from './tasks.service';

@Module({
  imports: [PersistenceModule, StorageModule, ComputeModule],
  controllers: [TasksController],
  providers: [TasksService, TaskLifecycleService],
})
export class TasksModule {}
