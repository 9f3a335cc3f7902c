import { DynamicModule, Module } from '@nestjs/common';
import { SettingsModule } from './config/settings.module';
import type { Settings } from './config/settings.schema';
import { LoggingModule } from './common/logging.module';
import type { Logger } from './common/logger';
import { PersistenceModule } from './persistence/persistence.module';
import { StorageModule } from './storage/storage.module';
import { ComputeModule } from './compute/compute.module';
import { TasksModule } from './tasks/tasks.module';
import { ServiceInfoModule } from './service-info/service-info.module';
import { AuthModule } from './auth/auth.module';

@Module({})
export class AppModule {
  static forRoot(settings: Settings, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        SettingsModule.forRoot(settings),
        LoggingModule.forRoot(logger),
        AuthModule,
        PersistenceModule,
        StorageModule,
        ComputeModule,
        TasksModule,
        ServiceInfoModule,
      ],
    };
  }
}
