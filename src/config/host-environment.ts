import * as os from 'node:os';

// What a runner's jobs inherit from the host: Pulsar gives them a clean environment with only HOME, PATH and TMPDIR
// from the server's own (pulsar-protocol reference §8). Read here because process.env is read only in src/config.

const FALLBACK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function jobHostEnvironment(): { HOME: string; PATH: string; TMPDIR: string } {
  return {
    HOME: process.env.HOME ?? os.homedir(),
    PATH: process.env.PATH ?? FALLBACK_PATH,
    TMPDIR: process.env.TMPDIR ?? os.tmpdir(),
  };
}
