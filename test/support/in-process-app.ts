// The real application in-process on 127.0.0.1 with its own data directory, for API and lifecycle tests.
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AppModule } from '../../src/app.module';
import { createHttpApp } from '../../src/api-docs/setup-http-app';
import { createLogger } from '../../src/common/logger';
import { loadSettings } from '../../src/config/settings.loader';
import { loopbackStorageOverrides } from './loopback-storage';

export interface InProcessApp {
  app: NestFastifyApplication;
  /** http://127.0.0.1:<port> */
  root: string;
  close(): Promise<void>;
}

export async function startInProcessApp(overrides: Record<string, unknown>): Promise<InProcessApp> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tesp-app-'));
  const settings = loadSettings({
    env: {},
    overrides: { 'server.host': '127.0.0.1', 'server.port': 0, data_dir: dataDir, 'logging.level': 'silent', ...loopbackStorageOverrides, ...overrides },
  });
  const app = await createHttpApp(AppModule.forRoot(settings, createLogger('silent')), settings, false);
  await app.listen(0, '127.0.0.1');
  return {
    app,
    root: `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`,
    close: async () => {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
