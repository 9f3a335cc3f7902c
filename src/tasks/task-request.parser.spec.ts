import { parseTaskRequest } from './task-request.parser';

describe('parseTaskRequest', () => {
  it('normalises a minimal task', () => {
    expect(parseTaskRequest({ executors: [{ image: 'alpine', command: ['echo'] }] })).toEqual({ executors: [{ image: 'alpine', command: ['echo'] }] });
  });

  it('ignores url when content is given, as the spec says', () => {
    const task = parseTaskRequest({ inputs: [{ path: '/a', url: 'https://x/y', content: 'c' }], executors: [{ image: 'i', command: ['c'] }] });
    expect(task.inputs).toEqual([{ path: '/a', content: 'c', type: 'FILE' }]);
  });

  it('accepts a transfer-only task with no executors', () => {
    const task = parseTaskRequest({ inputs: [{ path: '/a', url: 'https://x/y' }], outputs: [{ path: '/a', url: 'file:///d/a' }], executors: [] });
    expect(task.executors).toEqual([]);
  });

  it('rounds fractional cpu_cores up and refuses fewer than one', () => {
    expect(parseTaskRequest({ resources: { cpu_cores: 0.5 + 1 }, executors: [{ image: 'i', command: ['c'] }] }).resources).toEqual({ cpu_cores: 2 });
    expect(() => parseTaskRequest({ resources: { cpu_cores: 0 }, executors: [{ image: 'i', command: ['c'] }] })).toThrow(/resources\.cpu_cores: must be at least 1/);
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
