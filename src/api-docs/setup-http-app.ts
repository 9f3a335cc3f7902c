import { Logger, LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { SwaggerModule } from '@nestjs/swagger';
import type { Settings } from '../config/settings.schema';
import { installBodyParsers, limitJsonBodiesInFlight } from './request-body-parsers';
import { clientErrorReply, connectionOptions, frameworkErrorReply, limitConnections } from './http-server-guards';
import { loadTesOpenApiDocument, withSecuritySchemes } from './openapi-document';

const MIB = 1024 * 1024;

/** What browsers may send cross-origin when an origin is allowed (the `cors` package's list, as under Express). */
const CORS_METHODS = ['GET', 'HEAD', 'PUT', 'PATCH', 'POST', 'DELETE'];

/**
 * The API's Nest application on Fastify, with the HTTP concerns outside the controllers: body parsing, CORS, and
 * the docs at /docs. The error filter is TasksModule's APP_FILTER; Nest routes Fastify's own errors (body too
 * large, a content length that does not match) through it too, so every error has the one JSON shape.
 */
export async function createHttpApp(rootModule: unknown, settings: Settings, logger: LoggerService | false): Promise<NestFastifyApplication> {
  const bodyLimit = settings.server.body_limit_mb * MIB;
  // Tasks carry inline `content` inputs (the spec asks for at least 128 KiB each), far above Fastify's 1 MiB.
  // ignoreTrailingSlash: `/tasks/` lists as `/tasks` does, as it did under Express.
  // Timeouts, and errors answered before any route runs: see http-server-guards.ts.
  const adapter = new FastifyAdapter({ bodyLimit, ignoreTrailingSlash: true, ...connectionOptions(settings.server), clientErrorHandler: clientErrorReply(settings.server), frameworkErrors: frameworkErrorReply });
  // bodyParser false: Nest's parsers would replace installBodyParsers's (an empty JSON body is an error there).
  const app = await NestFactory.create<NestFastifyApplication>(rootModule as never, adapter, { logger, bodyParser: false });
  installBodyParsers(app.getHttpAdapter().getInstance(), bodyLimit, settings.limits);
  limitJsonBodiesInFlight(app.getHttpAdapter().getInstance(), bodyLimit, settings.server.json_in_flight_mb * MIB, 'server.json_in_flight_mb');
  // Through Nest's logger, which is the application's pino logger (and silent when `logger` is false).
  const httpLog = new Logger('HttpServer');
  limitConnections(app.getHttpServer(), settings.server, (message) => httpLog.warn(message));
  // No cross-origin access unless origins are listed: any web page a user opens could otherwise submit tasks and
  // read them all. @fastify/cors answers in onRequest, so every answer (errors included) carries the headers.
  if (settings.server.cors_origins.length > 0) app.enableCors({ origin: [...settings.server.cors_origins], methods: CORS_METHODS });
  app.getHttpAdapter().getInstance().get('/', (_req, reply) => reply.redirect('/docs', 302));
  const document = withSecuritySchemes(loadTesOpenApiDocument(), settings.auth.modes);
  // persistAuthorization: a login survives reloading the page.
  SwaggerModule.setup('docs', app, document as never, { customSiteTitle: 'tesp: GA4GH TES v1.1', swaggerOptions: { persistAuthorization: true } });
  return app;
}

/** Whether a listen address is reachable from this host only (an unauthenticated tesp should be). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
