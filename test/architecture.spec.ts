// The layers of src/ and the one direction their imports run: tasks → scheduler → compute → engine → storage →
// domain. Each folder may import only the folders listed for it; the domain imports nothing else of tesp, and the
// engine (shared by the API and `tesp runner`) imports no Nest module.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

const SRC = path.resolve(__dirname, '..', 'src');

const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  domain: [],
  common: ['domain'],
  config: ['domain', 'common'],
  storage: ['domain', 'common', 'config'],
  engine: ['storage', 'domain', 'common', 'config'],
  persistence: ['domain', 'common', 'config'],
  // Who calls: authenticators, the guard and the principal decorator.
  auth: ['domain', 'common', 'config'],
  compute: ['engine', 'storage', 'domain', 'common', 'config'],
  // `tesp runner`: a Pulsar-compatible server on the engine, beside the API (no Nest).
  runner: ['engine', 'storage', 'domain', 'common', 'config'],
  scheduler: ['compute', 'persistence', 'domain', 'common', 'config'],
  tasks: ['auth', 'scheduler', 'compute', 'persistence', 'storage', 'domain', 'common', 'config'],
  'service-info': ['auth', 'compute', 'storage', 'domain', 'common', 'config'],
  'api-docs': ['domain', 'common', 'config'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') && !name.endsWith('.spec.ts') ? [full] : [];
  });
}

/** Every module a file imports (static imports, re-exports and type imports alike). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'/gm)].map((m) => m[1] ?? m[2]);
}

const layerOf = (file: string) => path.relative(SRC, file).split(path.sep)[0];

describe('the layers of src/', () => {
  const files = sourceFiles(SRC).filter((file) => path.dirname(file) !== SRC);

  it('has every folder in the layer table', () => {
    expect([...new Set(files.map(layerOf))].filter((layer) => !(layer in ALLOWED))).toEqual([]);
  });

  it('imports only downward', () => {
    const wrong: string[] = [];
    for (const file of files) {
      const layer = layerOf(file);
      for (const target of importsOf(file).filter((spec) => spec.startsWith('.'))) {
        const targetLayer = layerOf(path.resolve(path.dirname(file), target));
        if (targetLayer !== layer && !ALLOWED[layer].includes(targetLayer)) wrong.push(`${path.relative(SRC, file)} imports ${target}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('keeps the domain free of everything else, and the engine free of Nest', () => {
    const domainImports = files.filter((file) => layerOf(file) === 'domain').flatMap((file) => importsOf(file).filter((spec) => !spec.startsWith('./')));
    expect(domainImports).toEqual([]);
    const engineNest = files.filter((file) => layerOf(file) === 'engine').flatMap((file) => importsOf(file).filter((spec) => spec.startsWith('@nestjs/')));
    expect(engineNest).toEqual([]);
  });
});
