import { Module, OnApplicationShutdown } from '@nestjs/common';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { StorageRegistry } from './storage-registry';

@Module({
  providers: [{ provide: StorageRegistry, inject: [SETTINGS], useFactory: (settings: Settings) => StorageRegistry.fromSettings(settings.storage) }],
  exports: [StorageRegistry],
})
export class StorageModule implements OnApplicationShutdown {
  constructor(private readonly registry: StorageRegistry) {}

  async onApplicationShutdown(): Promise<void> {
    await this.registry.close();
  }
}
