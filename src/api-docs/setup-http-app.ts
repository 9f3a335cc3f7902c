import type { NestExpressApplication } from '@nestjs/platform-express';
import { SwaggerModule } from '@nestjs/swagger';
import type { NextFunction, Request, Response } from 'express';
import type { Settings } from '../config/settings.schema';
import { bodyParserError } from '../common/http-exception.filter';
import { loadTesOpenApiDocument } from './openapi-document';

/**
 * HTTP concerns outside the controllers: body parsing, CORS, and the docs at /docs. The app must be created with
 * `bodyParser: false` (Nest's own 100 kB JSON parser would run first). The error filter is TasksModule's APP_FILTER;
 * body-parser errors happen before Nest's routing, so they get the same JSON shape from the middleware here.
 */
export function setupHttpApp(app: NestExpressApplication, settings: Settings): void {
  app.disable('x-powered-by');
  // No cross-origin access unless origins are listed: any web page a user opens could otherwise submit tasks and
  // read them all. First, so that every answer (body-parser errors included) carries the headers.
  if (settings.server.cors_origins.length > 0) app.enableCors({ origin: [...settings.server.cors_origins] });
  // Tasks carry inline `content` inputs (the spec asks for at least 128 KiB each), far above Express' 100 kB.
  app.useBodyParser('json', { limit: `${settings.server.body_limit_mb}mb` });
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const body = bodyParserError(err as { type?: string });
    if (!body) return next(err);
    res.status(body.status_code).json(body);
  });
  const adapter = app.getHttpAdapter();
  adapter.get('/', (_req, res) => adapter.redirect(res, 302, '/docs'));
  SwaggerModule.setup('docs', app, loadTesOpenApiDocument() as never, { customSiteTitle: 'tesp: GA4GH TES v1.1' });
}

/** Whether a listen address is reachable from this host only (an unauthenticated tesp should be). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
