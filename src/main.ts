#!/usr/bin/env node
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { AppModule } from './app.module';
import { loadSettings, SettingsError } from './config/settings.loader';
import type { Settings } from './config/settings.schema';
import { createLogger, Logger } from './common/logger';
import { PinoNestLogger } from './common/nest-logger';
import { isLoopback, setupHttpApp } from './api-docs/setup-http-app';
import { startRunner } from './runner/runner-service';

const USAGE = [
  'usage: tesp [serve|runner]   (settings from settings/*.yaml, TESP_PROFILE and TESP_* variables)',
  '  serve    serves the TES API (the default)',
  '  runner   serves the Pulsar REST API on runner.host:runner.port and runs its jobs (tesp runner)',
].join('\n');

const COMMANDS = ['serve', 'runner'] as const;

async function serve(settings: Settings, logger: Logger): Promise<void> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(settings, logger), {
    logger: new PinoNestLogger(logger),
    // setupHttpApp installs the JSON parser with the configured limit; Nest's 100 kB default would win otherwise.
    bodyParser: false,
  });
  setupHttpApp(app, settings);
  // Graceful stop: stop claiming tasks, leave running containers for the next start, close the store, exit 0.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'tesp is shutting down');
      app.close().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err: err instanceof Error ? err.message : String(err) }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
  if (!isLoopback(settings.server.host)) {
    logger.warn({ host: settings.server.host }, 'listening beyond loopback without authentication: anyone who reaches this port can run tasks and read every task');
  }
  await app.listen(settings.server.port, settings.server.host);
  const address = app.getHttpServer().address();
  logger.info({ address, port: typeof address === 'object' && address ? address.port : settings.server.port }, 'tesp is serving the TES API');
}

async function runner(settings: Settings, logger: Logger): Promise<void> {
  const running = await startRunner(settings, logger);
  // Graceful stop: stop serving; the jobs run on in their own sessions and are recovered at the next start.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'tesp runner is shutting down; its jobs keep running');
      running.close().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err: err instanceof Error ? err.message : String(err) }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
  if (!isLoopback(settings.runner.host) && !settings.runner.private_token) {
    logger.warn({ host: settings.runner.host }, 'the runner listens beyond loopback without a private_token: anyone who reaches this port can run commands');
  }
  logger.info({ port: running.port, host: settings.runner.host, staging_dir: running.stagingDir }, 'tesp runner is serving the Pulsar REST API');
}

async function main(): Promise<void> {
  const command = process.argv[2] ?? 'serve';
  if (command === '--help' || command === '-h') {
    console.log(USAGE);
    return;
  }
  if (!(COMMANDS as readonly string[]).includes(command)) {
    console.error(`tesp: unknown command "${command}"\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  let settings: Settings;
  try {
    settings = loadSettings();
  } catch (err) {
    if (err instanceof SettingsError) {
      // Through pino like every other line (numeric level), although the configured level is unknown yet.
      createLogger('info').fatal(`invalid settings: ${err.message}`);
      process.exitCode = 1;
      return;
    }
    throw err;
  }
  const logger = createLogger(settings.logging.level);
  // Process warnings (e.g. the AWS SDK's Node version notice) go through pino too; `npm start` runs node with
  // --no-warnings so they are not also printed as plain text.
  process.on('warning', (warning) => logger.warn({ warning: warning.name }, warning.message));
  try {
    await (command === 'runner' ? runner(settings, logger) : serve(settings, logger));
  } catch (err) {
    logger.fatal({ err: err instanceof Error ? err.message : String(err) }, command === 'runner' ? 'tesp runner could not start' : 'tesp could not start');
    process.exit(1);
  }
}

void main();
