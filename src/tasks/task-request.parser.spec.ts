import { parseTaskRequest } from './task-request.parser';

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
