// HEALTHCHECK of both images: `node docker/healthcheck.js api` asks this container's TES API for its service-info,
// `node docker/healthcheck.js runner` asks its tesp runner for /healthz. Port, address and the runner's
// private_token come from the same settings the server read (profile and TESP_* variables), so they always match.
// Exits 0 when the answer is 2xx, 1 otherwise; prints the status, never the URL (it carries the token).
'use strict';
const { loadSettings, SettingsError } = require('../dist/config/settings.loader');

const ANY_ADDRESS = new Set(['', '0.0.0.0', '::', '[::]']);

function probeUrl(role, settings) {
  const { host, port } = role === 'runner' ? settings.runner : settings.server;
  const address = ANY_ADDRESS.has(host) ? '127.0.0.1' : host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  if (role === 'runner') {
    const token = settings.runner.private_token;
    return `http://${address}:${port}/healthz${token ? `?private_token=${encodeURIComponent(token)}` : ''}`;
  }
  return `http://${address}:${port}/ga4gh/tes/v1/service-info`;
}

async function main() {
  const role = process.argv[2];
  if (role !== 'api' && role !== 'runner') {
    console.log('usage: node docker/healthcheck.js api|runner');
    return 1; // Docker reserves exit code 2 of a health check
  }
  const response = await fetch(probeUrl(role, loadSettings()), { signal: AbortSignal.timeout(4000) });
  console.log(`${role}: HTTP ${response.status}`);
  return response.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.log(`unhealthy: ${err instanceof SettingsError ? 'invalid settings' : (err && err.cause && err.cause.code) || (err && err.name) || err}`);
    process.exit(1);
  },
);
