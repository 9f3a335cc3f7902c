// Child process of direct-transfer.e2e-spec.ts: runs one transfer-only plan through tesp's Staging.transferDirect
// with the real backends and prints {rssBefore, rssPeak, bytes, sha256} as JSON. Its own process, so the peak RSS
// is the transfer's and not jest's. The sources are TypeScript, compiled file by file as they are required.
'use strict';
const { readFileSync } = require('node:fs');
const path = require('node:path');
const ts = require('typescript');

const ROOT = path.resolve(__dirname, '..', '..');
const compilerOptions = {
  module: ts.ModuleKind.CommonJS,
  target: ts.ScriptTarget.ES2022,
  esModuleInterop: true,
  experimentalDecorators: true,
  emitDecoratorMetadata: true,
};
require.extensions['.ts'] = (module, file) => {
  if (!file.startsWith(path.join(ROOT, 'src'))) throw new Error(`${file}: only tesp's sources are compiled here`);
  module._compile(ts.transpileModule(readFileSync(file, 'utf8'), { compilerOptions, fileName: file }).outputText, file);
};

const { loadSettings } = require(path.join(ROOT, 'src', 'config', 'settings.loader.ts'));
const { StorageRegistry } = require(path.join(ROOT, 'src', 'storage', 'storage-registry.ts'));
const { Staging } = require(path.join(ROOT, 'src', 'engine', 'staging.ts'));

async function main() {
  const { settings: overrides, plan } = JSON.parse(process.argv[2]);
  const settings = loadSettings({ env: {}, overrides });
  const staging = new Staging(StorageRegistry.fromSettings(settings.storage));
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 10);
  try {
    const staged = await staging.transferDirect(plan);
    const [output] = staged.outputs;
    process.stdout.write(JSON.stringify({ rssBefore, rssPeak, bytes: Number(output.size_bytes), sha256: staged.checksums[`sha256:${output.path}`] }));
  } finally {
    clearInterval(sampler);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
