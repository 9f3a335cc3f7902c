import { Module } from '@nestjs/common';
import { ComputeModule } from '../compute/compute.module';
import { StorageModule } from '../storage/storage.module';
import { ServiceInfoController } from './service-info.controller';
import { ServiceInfoService } from './service-info.service';

@Module({
  imports: [StorageModule, ComputeModule],
  controllers: [ServiceInfoController],
  providers: [ServiceInfoService],
})
export class ServiceInfoModule {}
