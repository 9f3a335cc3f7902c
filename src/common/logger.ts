import pino, { Logger } from 'pino';

export type { Logger } from 'pino';

/** The one logger: pino JSON on stdout, with credential-bearing fields redacted. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'tesp' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['password', '*.password', 'token', '*.token', 'authorization', '*.authorization', 'headers.authorization', 'secret', '*.secret', 'credentials', '*.credentials'],
      censor: '***',
    },
  });
}

export const LOGGER = Symbol('LOGGER');
