import { loadSettings } from '../config/settings.loader';
import { parseTaskRequest as parseWith } from './task-request.parser';
import type { RequestLimits } from './request-limits';

const LIMITS = loadSettings({ env: {} }).limits;
const parseTaskRequest = (body: unknown, limits: RequestLimits = LIMITS) => parseWith(body, limits);

describe('parseTaskRequest', () => {
  it('normalises a minimal task', () => {
    expect(parseTaskRequest({ executors: [{ image: 'alpine', command: ['echo'] }] })).toEqual({ executors: [{ image: 'alpine', command: ['echo'] }] });
  });

  it('takes an empty content as an empty file, unless a url is given beside it', () => {
    const executors = [{ image: 'i', command: ['c'] }];
    expect(parseTaskRequest({ inputs: [{ path: '/a', content: '' }], executors }).inputs).toEqual([{ path: '/a', content: '', type: 'FILE' }]);
    expect(parseTaskRequest({ inputs: [{ path: '/a', content: '', url: 'https://x/y' }], executors }).inputs).toEqual([{ path: '/a', url: 'https://x/y', type: 'FILE' }]);
  });

  it('ignores url when content is given, as the spec says', () => {
    const task = parseTaskRequest({ inputs: [{ path: '/a', url: 'https://x/y', content: 'c' }], executors: [{ image: 'i', command: ['c'] }] });
    expect(task.inputs).toEqual([{ path: '/a', content: 'c', type: 'FILE' }]);
  });

  it('accepts a transfer-only task with no executors', () => {
    const task = parseTaskRequest({ inputs: [{ path: '/a', url: 'https://x/y' }], outputs: [{ path: '/a', url: 'file:///d/a' }], executors: [] });
    expect(task.executors).toEqual([]);
  });

  it('rounds fractional cpu_cores up and refuses zero or less', () => {
    const executors = [{ image: 'i', command: ['c'] }];
    expect(parseTaskRequest({ resources: { cpu_cores: 1.5 }, executors }).resources).toEqual({ cpu_cores: 2 });
    expect(parseTaskRequest({ resources: { cpu_cores: 0.25 }, executors }).resources).toEqual({ cpu_cores: 1 });
    expect(() => parseTaskRequest({ resources: { cpu_cores: 0 }, executors })).toThrow(/resources\.cpu_cores: must be greater than 0/);
    expect(() => parseTaskRequest({ resources: { ram_gb: -1 }, executors })).toThrow(/resources\.ram_gb: must be at least 0/);
  });

  it('treats null as absent everywhere, map values included, and ignores read-only and unknown fields', () => {
    const task = parseTaskRequest({
      id: 'x', state: 'COMPLETE', logs: [], creation_time: 't', extra: 1, name: null,
      inputs: null, outputs: null, volumes: null, tags: { keep: 'v', drop: null },
      resources: { cpu_cores: null, zones: null, backend_parameters: { a: null, b: 'c' }, backend_parameters_strict: null },
      executors: [{ image: 'i', command: ['c'], workdir: null, stdin: null, env: { A: null }, ignore_error: null, unknown: true }],
    });
    expect(task).toEqual({ tags: { keep: 'v' }, resources: { backend_parameters: { b: 'c' } }, executors: [{ image: 'i', command: ['c'], env: {} }] });
  });

  it('refuses paths that are relative, climb with .., or name the container root for a file', () => {
    const executors = [{ image: 'i', command: ['c'] }];
    expect(() => parseTaskRequest({ inputs: [{ path: 'rel', content: 'x' }], executors })).toThrow('inputs[0].path: must be an absolute path, got "rel"');
    expect(() => parseTaskRequest({ inputs: [{ path: '/a/../b', content: 'x' }], executors })).toThrow(/inputs\[0\]\.path: must not contain "\.\."/);
    expect(() => parseTaskRequest({ inputs: [{ path: '/', url: 'https://x/y' }], executors })).toThrow('inputs[0].path: must not be the container root');
    expect(() => parseTaskRequest({ outputs: [{ path: '//', url: 'https://x/y' }], executors })).toThrow('outputs[0].path: must not be the container root');
    expect(parseTaskRequest({ outputs: [{ path: '/x', url: 'https://x/y' }], executors }).outputs?.[0].path).toBe('/x');
    expect(() => parseTaskRequest({ executors: [{ image: 'i', command: ['c'], stdin: 'in.txt' }] })).toThrow('executors[0].stdin: must be an absolute path, got "in.txt"');
    expect(() => parseTaskRequest({ volumes: ['/ok', '../no'], executors })).toThrow(/volumes\[1\]: must be an absolute path/);
  });

  it('keeps a "__proto__" map key as a plain entry and refuses env names a process cannot take', () => {
    const tags = parseTaskRequest({ tags: JSON.parse('{"__proto__": "p"}'), executors: [{ image: 'i', command: ['c'] }] }).tags!;
    expect(Object.getPrototypeOf(tags)).toBe(Object.prototype);
    expect(Object.entries(tags)).toEqual([['__proto__', 'p']]);
    expect(() => parseTaskRequest({ executors: [{ image: 'i', command: ['c'], env: { 'A=B': 'x' } }] })).toThrow('executors[0].env.A=B: not a valid variable name');
  });

  it('requires path_prefix to be a directory prefix of a glob path', () => {
    const executors = [{ image: 'i', command: ['c'] }];
    expect(() => parseTaskRequest({ outputs: [{ path: '/a/*.txt', path_prefix: '/b', url: 'https://x/' }], executors })).toThrow(/outputs\[0\]\.path_prefix: must be a directory prefix/);
    expect(parseTaskRequest({ outputs: [{ path: '/a/*.txt', path_prefix: '/a/', url: 'https://x/' }], executors }).outputs?.[0].path_prefix).toBe('/a/');
  });

  it('names nested fields in errors', () => {
    expect(() => parseTaskRequest({ executors: [{ image: 'i', command: ['c'] }, { image: '', command: ['c'] }] })).toThrow('executors[1].image: required');
    expect(() => parseTaskRequest({ inputs: [null], executors: [{ image: 'i', command: ['c'] }] })).toThrow('inputs[0]: must be a JSON object');
  });
});

describe('parseTaskRequest limits', () => {
  const executor = { image: 'alpine', command: ['true'] };
  const refuses = (body: object, limits: Partial<RequestLimits>, message: string) =>
    expect(() => parseTaskRequest(body, { ...LIMITS, ...limits })).toThrow(message);
  const times = <T>(n: number, make: (i: number) => T) => Array.from({ length: n }, (_, i) => make(i));

  it('bounds the number of inputs, outputs, executors, volumes and tags, naming the limit and its value', () => {
    refuses({ inputs: times(3, (i) => ({ path: `/in/${i}`, content: 'x' })), executors: [executor] }, { inputs: 2 }, 'inputs: 3 entries, more than limits.inputs (2)');
    refuses({ outputs: times(3, (i) => ({ path: `/out/${i}`, url: 'file:///o' })), executors: [executor] }, { outputs: 2 }, 'outputs: 3 entries, more than limits.outputs (2)');
    refuses({ executors: times(3, () => executor) }, { executors: 2 }, 'executors: 3 entries, more than limits.executors (2)');
    refuses({ volumes: ['/a', '/b', '/c'], executors: [executor] }, { volumes: 2 }, 'volumes: 3 entries, more than limits.volumes (2)');
    refuses({ tags: { a: '1', b: '2', c: '3' }, executors: [executor] }, { tags: 2 }, 'tags: 3 entries, more than limits.tags (2)');
    // At the limit is still fine.
    expect(parseTaskRequest({ executors: times(2, () => executor) }, { ...LIMITS, executors: 2 }).executors).toHaveLength(2);
  });

  it('bounds env entries, command entries and command bytes per executor', () => {
    refuses({ executors: [{ ...executor, env: { A: '1', B: '2', C: '3' } }] }, { env_entries: 2 }, 'executors[0].env: 3 entries, more than limits.env_entries (2)');
    refuses({ executors: [{ image: 'i', command: ['a', 'b', 'c'] }] }, { command_args: 2 }, 'executors[0].command: 3 entries, more than limits.command_args (2)');
    // Bytes, not characters: "é" is two UTF-8 bytes.
    refuses({ executors: [executor, { image: 'i', command: ['é'.repeat(600)] }] }, { command_bytes: 1024 }, 'executors[1].command: 1200 bytes, more than limits.command_bytes (1024)');
    expect(parseTaskRequest({ executors: [{ image: 'i', command: ['x'.repeat(1024)] }] }, { ...LIMITS, command_bytes: 1024 }).executors[0].command[0]).toHaveLength(1024);
  });

  it('bounds resource zones and backend parameters', () => {
    refuses({ resources: { zones: ['a', 'b', 'c'] }, executors: [executor] }, { resource_entries: 2 }, 'resources.zones: 3 entries, more than limits.resource_entries (2)');
    refuses({ resources: { backend_parameters: { a: '1', b: '2', c: '3' } }, executors: [executor] }, { resource_entries: 2 }, 'resources.backend_parameters: 3 entries, more than limits.resource_entries (2)');
  });

  it('bounds content in UTF-8 bytes', () => {
    const limits = { content_bytes: 128 * 1024 };
    const withContent = (content: string) => ({ inputs: [{ path: '/in', content }], executors: [executor] });
    expect(parseTaskRequest(withContent('x'.repeat(128 * 1024)), { ...LIMITS, ...limits }).inputs![0].content).toHaveLength(128 * 1024);
    refuses(withContent('x'.repeat(128 * 1024 + 1)), limits, 'inputs[0].content: 131073 bytes or more, more than limits.content_bytes (131072)');
    refuses(withContent('é'.repeat(64 * 1024 + 1)), limits, 'inputs[0].content: 131074 bytes, more than limits.content_bytes (131072)');
  });

  it('bounds the length of names, descriptions, URLs, paths, tag keys and values, and other strings', () => {
    const long = (n: number) => 'a'.repeat(n);
    refuses({ name: long(17), executors: [executor] }, { name_chars: 16 }, 'name: 17 characters, more than limits.name_chars (16)');
    refuses({ description: long(17), executors: [executor] }, { description_chars: 16 }, 'description: 17 characters, more than limits.description_chars (16)');
    refuses({ inputs: [{ path: '/in', url: `https://x/${long(300)}` }], executors: [executor] }, { url_chars: 256 }, 'inputs[0].url: 310 characters, more than limits.url_chars (256)');
    refuses({ outputs: [{ path: `/${long(300)}`, url: 'file:///o' }], executors: [executor] }, { path_chars: 256 }, 'outputs[0].path: 301 characters, more than limits.path_chars (256)');
    refuses({ volumes: [`/${long(300)}`], executors: [executor] }, { path_chars: 256 }, 'volumes[0]: 301 characters, more than limits.path_chars (256)');
    refuses({ tags: { [long(17)]: 'v' }, executors: [executor] }, { tag_key_chars: 16 }, 'tags[17-character key]: 17 characters, more than limits.tag_key_chars (16)');
    refuses({ tags: { k: long(17) }, executors: [executor] }, { tag_value_chars: 16 }, 'tags.k: 17 characters, more than limits.tag_value_chars (16)');
    refuses({ executors: [{ image: long(300), command: ['c'] }] }, { string_chars: 256 }, 'executors[0].image: 300 characters, more than limits.string_chars (256)');
    refuses({ executors: [{ ...executor, env: { A: long(300) } }] }, { string_chars: 256 }, 'executors[0].env.A: 300 characters, more than limits.string_chars (256)');
  });

  it('refuses a task far beyond a limit without walking its entries', () => {
    // Entries that would each fail differently: the count is what is reported, so nothing was parsed.
    const inputs = times(200_000, () => null);
    refuses({ inputs, executors: [executor] }, {}, 'inputs: 200000 entries, more than limits.inputs (1000)');
  });
});
