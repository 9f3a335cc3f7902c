#!/usr/bin/env node
import 'reflect-metadata';
import { AppModule } from './app.module';
import { loadSettings, SettingsError } from './config/settings.loader';
import type { Settings } from './config/settings.schema';
import { createLogger, Logger } from './common/logger';
import { PinoNestLogger } from './common/nest-logger';
import { createHttpApp, isLoopback } from './api-docs/setup-http-app';
import { startRunner } from './runner/runner-service';
import { errorMessage } from './common/redact';
import { copyTasks, openStoreByName } from './persistence/store-copy';
import type { TaskRepository } from './persistence/task-repository';

const USAGE = [
  'usage: tesp [serve|runner]   (settings from settings/*.yaml, TESP_PROFILE and TESP_* variables)',
  '  serve    serves the TES API (the default)',
  '  runner   serves the Pulsar REST API on runner.host:runner.port and runs its jobs (tesp runner)',
  '  store copy --from STORE --to STORE',
  '           copies every task from one store to another (STORE: sqlite:PATH or mongodb://host/db); run with tesp stopped',
].join('\n');

const COMMANDS = ['serve', 'runner', 'store'] as const;

/** `tesp store copy --from A --to B`: no settings needed beyond the logging level. */
async function storeCommand(args: readonly string[]): Promise<void> {
  const logger = createLogger('info');
  const option = (name: string) => {
    const at = args.indexOf(`--${name}`);
    return at === -1 ? undefined : args[at + 1];
  };
  const from = option('from');
  const to = option('to');
  if (args[0] !== 'copy' || !from || !to) {
    console.error(`tesp store: expected "copy --from STORE --to STORE"\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  let source: TaskRepository | undefined;
  let target: TaskRepository | undefined;
  try {
    source = await openStoreByName(from, logger);
    target = await openStoreByName(to, logger);
    const report = await copyTasks(source, target, (done) => {
      if (done % 1000 === 0) logger.info({ done }, 'copying tasks');
    });
    logger.info({ copied: report.copied, already_there: report.alreadyThere }, 'store copy finished');
  } catch (err) {
    logger.fatal({ err: errorMessage(err) }, 'store copy failed');
    process.exitCode = 1;
  } finally {
    await source?.close();
    await target?.close();
  }
}

async function serve(settings: Settings, logger: Logger): Promise<void> {
  if (!isLoopback(settings.server.host) && settings.auth.modes.includes('none') && !settings.server.allow_unauthenticated_remote) {
    throw new SettingsError(
      `server.host is ${settings.server.host}, beyond loopback, and auth.modes is [none]: anyone who reaches the port could run tasks. ` +
        'Turn authentication on (auth.modes: [basic] or [oidc]) or set server.allow_unauthenticated_remote: true (e.g. behind an authenticating reverse proxy)',
    );
  }
  const app = await createHttpApp(AppModule.forRoot(settings, logger), settings, new PinoNestLogger(logger));
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
  if (!isLoopback(settings.server.host) && settings.auth.modes.includes('none')) {
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
  const amqp = settings.runner.amqp.url || settings.runner.amqp.url_file ? { amqp_manager: settings.runner.amqp.manager } : {};
  if (running.port === 0) logger.info({ port: 0, staging_dir: running.stagingDir, ...amqp }, 'tesp runner is consuming its Pulsar queues (no HTTP port)');
  else logger.info({ port: running.port, host: settings.runner.host, staging_dir: running.stagingDir, ...amqp }, 'tesp runner is serving the Pulsar REST API');
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
  if (command === 'store') {
    await storeCommand(process.argv.slice(3));
    process.exit();
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
    if (err instanceof SettingsError) {
      logger.fatal(`invalid settings: ${err.message}`);
      process.exit(1);
    }
    logger.fatal({ err: err instanceof Error ? err.message : String(err) }, command === 'runner' ? 'tesp runner could not start' : 'tesp could not start');
    process.exit(1);
  }
}

void main();
