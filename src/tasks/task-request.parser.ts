import * as path from 'node:path';
import { DomainError, ErrorCode } from '../domain/domain-error';
import type { FileType, TesExecutor, TesInput, TesOutput, TesResources, TesTaskRequest } from '../domain/tes-task';
import { LimitKey, limitProblem, RequestLimits } from './request-limits';

// Turns a client's JSON into a TesTaskRequest. Lenient where clients differ (unknown fields, nulls, read-only
// fields, a missing `type`, float cpu_cores), strict where a task could not run (types, required fields, paths).
// Every error names the field, e.g. "executors[0].image: required", and a limit its setting, e.g.
// "inputs: 1001 entries, more than limits.inputs (1000)". Counts are checked before entries are walked and string
// lengths in O(1), so a hostile body costs time in proportion to its size and no more.

type Json = Record<string, unknown>;

type CharLimit = 'name_chars' | 'description_chars' | 'url_chars' | 'path_chars' | 'tag_key_chars' | 'tag_value_chars' | 'string_chars';

class Fields {
  constructor(
    private readonly at: string,
    readonly limits: RequestLimits,
  ) {}

  fail(field: string, problem: string): never {
    throw new DomainError(ErrorCode.InvalidArgument, `${this.join(field)}: ${problem}`);
  }

  join(field: string): string {
    return this.at ? (field.startsWith('[') ? `${this.at}${field}` : `${this.at}.${field}`) : field;
  }

  /** Fails when `amount` exceeds the limit `key`. */
  bound(field: string, amount: number, unit: string, key: LimitKey): void {
    if (amount > this.limits[key]) this.fail(field, limitProblem(amount, unit, key, this.limits));
  }

  nested(at: string): Fields {
    return new Fields(this.join(at), this.limits);
  }
}

const isAbsent = (v: unknown) => v === undefined || v === null;

function object(value: unknown, where: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DomainError(ErrorCode.InvalidArgument, `${where || 'body'}: must be a JSON object`);
  }
  return value as Json;
}

function optString(obj: Json, key: string, f: Fields, limit: CharLimit): string | undefined {
  const v = obj[key];
  if (isAbsent(v)) return undefined;
  if (typeof v !== 'string') f.fail(key, 'must be a string');
  f.bound(key, v.length, 'characters', limit);
  return v;
}

function reqString(obj: Json, key: string, f: Fields, limit: CharLimit): string {
  const v = optString(obj, key, f, limit);
  if (v === undefined || v === '') f.fail(key, 'required');
  return v;
}

function optBool(obj: Json, key: string, f: Fields): boolean | undefined {
  const v = obj[key];
  if (isAbsent(v)) return undefined;
  if (typeof v !== 'boolean') f.fail(key, 'must be true or false');
  return v;
}

function optNumber(obj: Json, key: string, f: Fields, bound: { min: number } | { above: number } = { min: 0 }): number | undefined {
  const v = obj[key];
  if (isAbsent(v)) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) f.fail(key, 'must be a number');
  if ('min' in bound && v < bound.min) f.fail(key, `must be at least ${bound.min}`);
  if ('above' in bound && v <= bound.above) f.fail(key, `must be greater than ${bound.above}`);
  return v;
}

function optArray(obj: Json, key: string, f: Fields, limit: LimitKey): unknown[] | undefined {
  const v = obj[key];
  if (isAbsent(v)) return undefined;
  if (!Array.isArray(v)) f.fail(key, 'must be an array');
  f.bound(key, v.length, 'entries', limit);
  return v;
}

function stringList(obj: Json, key: string, f: Fields, count: LimitKey, chars: CharLimit): string[] | undefined {
  const items = optArray(obj, key, f, count);
  return items?.map((item, i) => {
    if (typeof item !== 'string') f.fail(`${key}[${i}]`, 'must be a string');
    f.bound(`${key}[${i}]`, item.length, 'characters', chars);
    return item;
  });
}

/**
 * A string map; null values are dropped (Cromwell sends them). Numbers and booleans are refused rather than
 * stringified: the spec says string values, and a silent "1" for 1 would hide a client bug.
 */
function stringMap(obj: Json, key: string, f: Fields, bounds: { count: LimitKey; keyChars: CharLimit; valueChars: CharLimit }): Record<string, string> | undefined {
  const v = obj[key];
  if (isAbsent(v)) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) f.fail(key, 'must be an object of strings');
  const keys = Object.keys(v as Json);
  f.bound(key, keys.length, 'entries', bounds.count);
  const out: Record<string, string> = {};
  for (const k of keys) {
    const value = (v as Json)[k];
    // The key's length first: a field name quoting a huge key would make a huge message.
    if (k.length > f.limits[bounds.keyChars]) f.fail(`${key}[${k.length}-character key]`, limitProblem(k.length, 'characters', bounds.keyChars, f.limits));
    if (value === null) continue;
    if (typeof value !== 'string') f.fail(`${key}.${k}`, 'must be a string');
    f.bound(`${key}.${k}`, value.length, 'characters', bounds.valueChars);
    // defineProperty: a "__proto__" key stays a plain entry instead of touching the prototype (and only then:
    // it is slow, and makes the map slow to read).
    if (k === '__proto__') Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
    else out[k] = value;
  }
  return out;
}

function absolutePath(value: string | undefined, field: string, f: Fields): void {
  if (value === undefined) return;
  if (!value.startsWith('/')) f.fail(field, `must be an absolute path, got "${value}"`);
  if (value.split('/').includes('..')) f.fail(field, `must not contain "..", got "${value}"`);
  if (value.includes('\0')) f.fail(field, 'must not contain NUL');
}

function fileType(obj: Json, f: Fields): FileType {
  const v = obj.type;
  if (isAbsent(v)) return 'FILE';
  if (v !== 'FILE' && v !== 'DIRECTORY') f.fail('type', 'must be FILE or DIRECTORY');
  return v;
}

const GLOB = /[*?[\]{}]/;

/** An inline content's UTF-8 size, bounded by limits.content_bytes (the spec asks for at least 128 KiB). */
function optContent(obj: Json, f: Fields): string | undefined {
  const v = obj.content;
  if (isAbsent(v)) return undefined;
  if (typeof v !== 'string') f.fail('content', 'must be a string');
  // A string never has fewer UTF-8 bytes than code units: the long ones fail without being measured.
  const bytes = v.length > f.limits.content_bytes ? v.length : Buffer.byteLength(v, 'utf8');
  f.bound('content', bytes, v.length === bytes ? 'bytes or more' : 'bytes', 'content_bytes');
  return v;
}

function parseInput(raw: unknown, where: string, parent: Fields): TesInput {
  const obj = object(raw, where);
  const f: Fields = parent.nested(where);
  const content = optContent(obj, f);
  const url = optString(obj, 'url', f, 'url_chars');
  const input: TesInput = {
    name: optString(obj, 'name', f, 'name_chars'),
    description: optString(obj, 'description', f, 'description_chars'),
    path: reqString(obj, 'path', f, 'path_chars'),
    type: fileType(obj, f),
    streamable: optBool(obj, 'streamable', f),
  };
  absolutePath(input.path, 'path', f);
  if (path.posix.normalize(input.path) === '/') f.fail('path', 'must not be the container root');
  // The spec: when content is set, url is ignored. Some clients send content "" beside a url, so an empty content
  // only stands (as an empty file) when there is no url.
  if (content !== undefined && (content !== '' || !url)) {
    if (input.type === 'DIRECTORY') f.fail('type', 'an input with content must be a FILE');
    input.content = content;
  } else if (url) {
    input.url = url;
  } else {
    f.fail('url', 'required unless content is given');
  }
  return strip(input);
}

function parseOutput(raw: unknown, where: string, parent: Fields): TesOutput {
  const obj = object(raw, where);
  const f: Fields = parent.nested(where);
  const output: TesOutput = {
    name: optString(obj, 'name', f, 'name_chars'),
    description: optString(obj, 'description', f, 'description_chars'),
    url: reqString(obj, 'url', f, 'url_chars'),
    path: reqString(obj, 'path', f, 'path_chars'),
    path_prefix: optString(obj, 'path_prefix', f, 'path_chars'),
    type: fileType(obj, f),
  };
  absolutePath(output.path, 'path', f);
  if (path.posix.normalize(output.path) === '/') f.fail('path', 'must not be the container root');
  if (GLOB.test(output.path)) {
    if (output.path_prefix === undefined) f.fail('path_prefix', 'required when path contains wildcards');
    absolutePath(output.path_prefix, 'path_prefix', f);
    const prefix = output.path_prefix.replace(/\/+$/, '');
    if (GLOB.test(prefix)) f.fail('path_prefix', 'must not contain wildcards');
    if (!output.path.startsWith(prefix + '/')) f.fail('path_prefix', `must be a directory prefix of path "${output.path}"`);
  } else if (output.path_prefix !== undefined) {
    absolutePath(output.path_prefix, 'path_prefix', f);
  }
  return strip(output);
}

function parseExecutor(raw: unknown, where: string, parent: Fields): TesExecutor {
  const obj = object(raw, where);
  const f: Fields = parent.nested(where);
  const command = stringList(obj, 'command', f, 'command_args', 'string_chars');
  if (!command || command.length === 0) f.fail('command', 'required: a non-empty array of strings');
  let commandBytes = 0;
  for (const arg of command) commandBytes += Buffer.byteLength(arg, 'utf8');
  f.bound('command', commandBytes, 'bytes', 'command_bytes');
  const executor: TesExecutor = {
    image: reqString(obj, 'image', f, 'string_chars'),
    command,
    workdir: optString(obj, 'workdir', f, 'path_chars'),
    stdin: optString(obj, 'stdin', f, 'path_chars'),
    stdout: optString(obj, 'stdout', f, 'path_chars'),
    stderr: optString(obj, 'stderr', f, 'path_chars'),
    env: stringMap(obj, 'env', f, { count: 'env_entries', keyChars: 'name_chars', valueChars: 'string_chars' }),
    ignore_error: optBool(obj, 'ignore_error', f),
  };
  for (const name of Object.keys(executor.env ?? {})) {
    // A name with "=" or NUL cannot be passed as NAME=value to a process.
    if (name === '' || name.includes('=') || name.includes('\0')) f.fail(`env.${name}`, 'not a valid variable name');
  }
  for (const key of ['workdir', 'stdin', 'stdout', 'stderr'] as const) absolutePath(executor[key], key, f);
  return strip(executor);
}

function parseResources(raw: unknown, parent: Fields): TesResources | undefined {
  if (isAbsent(raw)) return undefined;
  const obj = object(raw, 'resources');
  const f: Fields = parent.nested('resources');
  const cpu = optNumber(obj, 'cpu_cores', f, { above: 0 });
  const resources: TesResources = {
    // The v1.2 draft allows fractions (0.5 cores); clients such as py-tes need an integer back, so round up.
    cpu_cores: cpu === undefined ? undefined : Math.ceil(cpu),
    preemptible: optBool(obj, 'preemptible', f),
    ram_gb: optNumber(obj, 'ram_gb', f),
    disk_gb: optNumber(obj, 'disk_gb', f),
    zones: stringList(obj, 'zones', f, 'resource_entries', 'string_chars'),
    backend_parameters: stringMap(obj, 'backend_parameters', f, { count: 'resource_entries', keyChars: 'string_chars', valueChars: 'string_chars' }),
    backend_parameters_strict: optBool(obj, 'backend_parameters_strict', f),
  };
  if (resources.cpu_cores !== undefined && resources.cpu_cores > 2 ** 31 - 1) f.fail('cpu_cores', 'too large');
  return strip(resources);
}

export function parseTaskRequest(body: unknown, limits: RequestLimits): TesTaskRequest {
  // The body is undefined when no parser took it: none was sent, or not as application/json.
  if (body === undefined) throw new DomainError(ErrorCode.InvalidArgument, 'body: required: a JSON task object sent with Content-Type: application/json');
  const obj = object(body, '');
  const f: Fields = new Fields('', limits);
  // Every count before any entry is parsed: a task far beyond a limit is refused without walking it.
  const executorsRaw = optArray(obj, 'executors', f, 'executors');
  if (!executorsRaw) f.fail('executors', 'required: an array of executors');
  const inputsRaw = optArray(obj, 'inputs', f, 'inputs');
  const outputsRaw = optArray(obj, 'outputs', f, 'outputs');
  const task: TesTaskRequest = {
    name: optString(obj, 'name', f, 'name_chars'),
    description: optString(obj, 'description', f, 'description_chars'),
    inputs: inputsRaw?.map((raw, i) => parseInput(raw, `inputs[${i}]`, f)),
    outputs: outputsRaw?.map((raw, i) => parseOutput(raw, `outputs[${i}]`, f)),
    resources: parseResources(obj.resources, f),
    executors: executorsRaw.map((raw, i) => parseExecutor(raw, `executors[${i}]`, f)),
    volumes: stringList(obj, 'volumes', f, 'volumes', 'path_chars'),
    tags: stringMap(obj, 'tags', f, { count: 'tags', keyChars: 'tag_key_chars', valueChars: 'tag_value_chars' }),
  };
  // No executors: a transfer-only task, which needs something to transfer.
  if (task.executors.length === 0 && !task.inputs?.length && !task.outputs?.length) {
    f.fail('executors', 'must not be empty (a task without executors must have inputs or outputs)');
  }
  task.volumes?.forEach((v, i) => absolutePath(v, `volumes[${i}]`, f));
  return strip(task);
}

/**
 * The defined fields only, so stored tasks and views carry only what was given. A new object rather than `delete`,
 * which would turn the object into a slow dictionary for everything that reads or serialises it later.
 */
function strip<T extends object>(value: T): T {
  const out = {} as T;
  for (const key in value) if (value[key] !== undefined) out[key] = value[key];
  return out;
}
