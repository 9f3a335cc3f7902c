#!/usr/bin/env node
// Test-only MongoDB wire-protocol server: CongoDB (CongoServer from @push.rocks/smartmongo 2.2.0), in memory.
// Usage: node test/mongo-wire/server.js [--port N] [--host H]   (defaults 27027, 127.0.0.1; port 0: any free one)
// Prints one line {"listening":N} on stdout once the port accepts connections; SIGTERM or SIGINT stops it and
// exits 0. Data lives only as long as the process. Needs `npm --prefix test/mongo-wire ci` first.
'use strict';

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at === -1) return fallback;
  const value = process.argv[at + 1];
  if (value === undefined || value.startsWith('--')) {
    process.stderr.write(`--${name} needs a value\n`);
    process.exit(2);
  }
  return value;
}

async function main() {
  const port = Number(option('port', '27027'));
  const host = option('host', '127.0.0.1');
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`bad --port ${port}\n`);
    process.exit(2);
  }
  // The CongoDB module only: the package's main entry also loads its mongodb-memory-server wrapper, whose
  // dependencies are replaced by an empty package here (see package.json "overrides").
  let CongoServer;
  try {
    ({ CongoServer } = await import('@push.rocks/smartmongo/dist_ts/congodb/index.js'));
  } catch (err) {
    process.stderr.write(`cannot load CongoDB (run: npm --prefix test/mongo-wire ci): ${err.message}\n`);
    process.exit(3);
  }
  const server = new CongoServer({ port, host, storage: 'memory' });
  await server.start();
  // --port 0 picks a free port; CongoServer.port echoes the option, so ask the socket.
  const address = server.server && server.server.address();
  const listening = address && typeof address === 'object' ? address.port : server.port;
  process.stdout.write(`${JSON.stringify({ listening })}\n`);

  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    try {
      await server.stop();
    } catch (err) {
      process.stderr.write(`stop after ${signal}: ${err.message}\n`);
    }
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
