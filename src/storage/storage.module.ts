import { Module, OnApplicationShutdown } from '@nestjs/common';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { StagingService } from './staging.service';
import { StorageRegistry } from './storage-registry';

@Module({
  providers: [
    { provide: StorageRegistry, inject: [SETTINGS], useFactory: (settings: Settings) => StorageRegistry.fromSettings(settings) },
    { provide: StagingService, inject: [StorageRegistry], useFactory: (registry: StorageRegistry) => new StagingService(registry) },
  ],
  exports: [StorageRegistry, StagingService],
})
export class StorageModule implements OnApplicationShutdown {
  constructor(private readonly registry: StorageRegistry) {}

  async onApplicationShutdown(): Promise<void> {
    await this.registry.close();
  }
}
