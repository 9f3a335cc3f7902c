import type { NestExpressApplication } from '@nestjs/platform-express';
import { SwaggerModule } from '@nestjs/swagger';
import type { NextFunction, Request, Response } from 'express';
import type { Settings } from '../config/settings.schema';
import { LOGGER, Logger } from '../common/logger';
import { bodyParserError, HttpExceptionFilter } from '../common/http-exception.filter';
import { loadTesOpenApiDocument } from './openapi-document';

/** HTTP concerns outside the controllers: body parsing, CORS, the error filter, and the docs at /docs. */
export function setupHttpApp(app: NestExpressApplication, settings: Settings): void {
  const logger = app.get<Logger>(LOGGER);
  // Tasks carry inline `content` inputs (the spec asks for at least 128 KiB each), far above Express' 100 kB.
  app.useBodyParser('json', { limit: `${settings.server.body_limit_mb}mb` });
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const body = bodyParserError(err as { type?: string });
    if (!body) return next(err);
    res.status(body.status_code).json(body);
  });
  if (settings.server.cors) app.enableCors();
  app.useGlobalFilters(new HttpExceptionFilter(logger));
  const adapter = app.getHttpAdapter();
  adapter.get('/', (_req, res) => adapter.redirect(res, 302, '/docs'));
  SwaggerModule.setup('docs', app, loadTesOpenApiDocument() as never, { customSiteTitle: 'tesp: GA4GH TES v1.1' });
}
