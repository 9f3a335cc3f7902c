import { Controller, Get } from '@nestjs/common';
import { ServiceInfoService } from './service-info.service';

@Controller(['ga4gh/tes/v1', 'v1'])
export class ServiceInfoController {
  constructor(private readonly info: ServiceInfoService) {}

  @Get('service-info')
  get() {
    return this.info.get();
  }
}
