import { readFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import * as yaml from 'js-yaml';
import { Leaf, Schema, Settings, settingsSchema } from './settings.schema';

export class SettingsError extends Error {}

export interface LoadOptions {
  /** Directory holding default.yaml and the profiles; defaults to <project>/settings. */
  settingsDir?: string;
  /** Environment to read TESP_PROFILE and the TESP_* overrides from; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Overrides applied last, by dotted key (tests use this). */
  overrides?: Record<string, unknown>;
}

const ENV_PREFIX = 'TESP_';

/** TESP_ variables that are not settings: the loader's own, and what the process runtime gives executors. */
const OTHER_VARIABLES = new Set(['TESP_PROFILE', 'TESP_SETTINGS_DIR', 'TESP_TASK_ROOT']);

/** Keys that earlier releases had, with what to use instead, so an old settings file fails with a hint. */
const RETIRED_KEYS: Readonly<Record<string, string>> = {
  'scheduler.max_concurrent_tasks': 'it is now compute.local.max_concurrent_tasks',
  'scheduler.dispatch_delay_ms': 'it was removed: a task starts as soon as a replica has capacity for it',
  'server.cors': 'it was replaced by server.cors_origins, a list of allowed origins (none by default)',
};

/** Env var for a key: server.port -> TESP_SERVER__PORT (sections joined by a double underscore). */
export function envNameFor(key: string): string {
  return ENV_PREFIX + key.split('.').map((part) => part.toUpperCase()).join('__');
}

export function loadSettings(options: LoadOptions = {}): Settings {
  const env = options.env ?? process.env;
  const dir = options.settingsDir ?? env.TESP_SETTINGS_DIR ?? path.resolve(__dirname, '..', '..', 'settings');
  const profile = env.TESP_PROFILE;

  const layers: Array<{ source: string; values: Record<string, unknown> }> = [];
  const defaultFile = path.join(dir, 'default.yaml');
  if (existsSync(defaultFile)) layers.push({ source: defaultFile, values: flatten(readYaml(defaultFile)) });
  if (profile) {
    if (!/^[A-Za-z0-9_-]+$/.test(profile)) throw new SettingsError(`TESP_PROFILE "${profile}" is not a profile name`);
    const profileFile = path.join(dir, `${profile}.yaml`);
    if (!existsSync(profileFile)) throw new SettingsError(`TESP_PROFILE "${profile}": no file ${profileFile}`);
    layers.push({ source: profileFile, values: flatten(readYaml(profileFile)) });
  }

  const leaves = leafEntries(settingsSchema);
  const known = new Set(leaves.map(([key]) => key));
  for (const layer of layers) {
    for (const key of Object.keys(layer.values)) {
      if (!known.has(key)) throw new SettingsError(`${layer.source}: unknown setting "${key}"${hintFor(key, [...known])}`);
    }
  }
  // A typo in a variable must fail as loudly as the same typo in a file, not fall back to the default.
  const envNames = new Map(leaves.map(([key]) => [envNameFor(key), key]));
  for (const name of Object.keys(env)) {
    if (!name.startsWith(ENV_PREFIX) || OTHER_VARIABLES.has(name) || envNames.has(name)) continue;
    const retired = Object.keys(RETIRED_KEYS).find((key) => envNameFor(key) === name);
    const hint = retired ? `; ${RETIRED_KEYS[retired]}` : closest(name, [...envNames.keys()]);
    throw new SettingsError(`environment variable ${name} names no setting${hint}`);
  }

  const result: Record<string, unknown> = {};
  for (const [key, leaf] of leaves) {
    let raw: unknown = leaf.default;
    let source = 'default';
    for (const layer of layers) {
      if (key in layer.values) {
        raw = layer.values[key];
        source = layer.source;
      }
    }
    const envName = envNameFor(key);
    if (env[envName] !== undefined) {
      raw = env[envName];
      source = `environment variable ${envName}`;
    }
    if (options.overrides && key in options.overrides) {
      raw = options.overrides[key];
      source = 'override';
    }
    setPath(result, key, coerce(key, leaf, raw, source));
  }
  return deepFreeze(result) as unknown as Settings;
}

/** What to say about an unknown key: where a retired key went, or the closest known one. */
function hintFor(key: string, known: readonly string[]): string {
  return RETIRED_KEYS[key] ? `; ${RETIRED_KEYS[key]}` : closest(key, known);
}

/** "; did you mean X?" for the known name within a few edits of `name`, or nothing. */
function closest(name: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Math.max(3, Math.floor(name.length / 5)) + 1;
  for (const candidate of known) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best ? `; did you mean ${best}?` : '';
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

function readYaml(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = yaml.load(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new SettingsError(`${file}: not valid YAML: ${(err as Error).message}`);
  }
  if (parsed === undefined || parsed === null) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new SettingsError(`${file}: must hold a mapping`);
  return parsed as Record<string, unknown>;
}

function flatten(obj: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, flatten(v as Record<string, unknown>, key));
    else out[key] = v;
  }
  return out;
}

function leafEntries(schema: Schema, prefix = ''): Array<[string, Leaf]> {
  return Object.entries(schema).flatMap(([k, v]) => {
    const key = prefix ? `${prefix}.${k}` : k;
    return 'kind' in v && typeof v.kind === 'string' ? [[key, v as Leaf]] : leafEntries(v as Schema, key);
  });
}

function coerce(key: string, leaf: Leaf, raw: unknown, source: string): unknown {
  const fail = (why: string): never => {
    throw new SettingsError(`setting "${key}" (from ${source}): ${why}`);
  };
  switch (leaf.kind) {
    case 'string': {
      if (typeof raw === 'number' || typeof raw === 'boolean') raw = String(raw);
      if (typeof raw !== 'string') return fail('must be a string');
      if (!leaf.allowEmpty && raw === '' && leaf.default !== '') fail('must not be empty');
      if (leaf.oneOf && !leaf.oneOf.includes(raw)) fail(`must be one of ${leaf.oneOf.join(', ')}, got "${raw}"`);
      if (leaf.pattern && !(leaf.allowEmpty && raw === '') && !leaf.pattern.regex.test(raw)) fail(`must be ${leaf.pattern.what}, got "${raw}"`);
      if (leaf.url && !(leaf.allowEmpty && raw === '') && !/^https?:\/\/[^\s]+$/.test(raw)) fail(`must be an http(s) URL, got "${raw}"`);
      if (leaf.dateTime && !(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(raw) && Number.isFinite(Date.parse(raw)))) {
        fail(`must be an RFC 3339 date-time such as 2026-01-01T00:00:00Z, got "${raw}"`);
      }
      return raw;
    }
    case 'int': {
      const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isInteger(n)) return fail(`must be an integer, got "${String(raw)}"`);
      if (n < leaf.min || n > leaf.max) fail(`must be between ${leaf.min} and ${leaf.max}, got ${n}`);
      return n;
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return fail(`must be true or false, got "${String(raw)}"`);
    }
    case 'list': {
      let items: unknown = raw;
      if (typeof raw === 'string') {
        const trimmed = raw.trim();
        items = trimmed.startsWith('[') ? parseJsonList(trimmed, fail) : trimmed === '' ? [] : trimmed.split(',').map((s) => s.trim());
      }
      if (!Array.isArray(items) || items.some((i) => typeof i !== 'string')) return fail('must be a list of strings');
      if (leaf.check) {
        try {
          leaf.check(items as string[]);
        } catch (err) {
          // Entry parsers name the key themselves; the message here names it once, with the source.
          let message = (err as Error).message;
          if (message.startsWith(key)) {
            const rest = message.slice(key.length);
            const index = /^\[(\d+)\]/.exec(rest);
            message = index ? `entry ${index[1]}${rest.slice(index[0].length)}` : rest.replace(/^:\s*/, '');
          }
          fail(message);
        }
      }
      return [...items];
    }
  }
}

function parseJsonList(text: string, fail: (why: string) => never): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return fail('must be a JSON list or comma-separated values');
  }
}

function setPath(target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
  node[parts[parts.length - 1]] = value;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Absolute data directory from settings (relative paths resolve against the working directory). */
export function dataDir(settings: Settings): string {
  return path.resolve(settings.data_dir);
}
