import { Controller, Get } from '@nestjs/common';
import { PublicRoute } from '../auth/public-route.decorator';
import { ServiceInfoService } from './service-info.service';

@Controller(['ga4gh/tes/v1', 'v1'])
export class ServiceInfoController {
  constructor(private readonly info: ServiceInfoService) {}

  @PublicRoute()
  @Get('service-info')
  get() {
    return this.info.get();
  }
}
