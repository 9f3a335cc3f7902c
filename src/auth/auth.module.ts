import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { LOGGER, Logger } from '../common/logger';
import { AuthGuard } from './auth.guard';
import { AUTHENTICATORS } from './authenticator';
import { createAuthenticators } from './authenticator.factory';
import { RateLimiter } from './rate-limiter';

@Module({
  providers: [
    { provide: AUTHENTICATORS, useFactory: (settings: Settings, logger: Logger) => createAuthenticators(settings, logger), inject: [SETTINGS, LOGGER] },
    { provide: RateLimiter, useFactory: (settings: Settings) => new RateLimiter(settings.auth.rate_limit.requests_per_minute, settings.auth.rate_limit.burst), inject: [SETTINGS] },
    { provide: APP_GUARD, useClass: AuthGuard },
  ],
})
export class AuthModule {}
