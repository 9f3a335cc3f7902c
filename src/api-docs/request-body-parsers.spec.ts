import { jsonShapeProblem } from './request-body-parsers';

describe('jsonShapeProblem', () => {
  const limits = { json_depth: 8, json_values: 1000 };
  const check = (text: string) => jsonShapeProblem(Buffer.from(text), limits);

  it('takes JSON within the depth and value limits', () => {
    expect(check('{"executors":[{"image":"a","command":["x"],"env":{"A":"1"}}]}')).toBeUndefined();
    expect(check('[[[[[[[[1]]]]]]]]')).toBeUndefined();
    expect(check(JSON.stringify(Array.from({ length: 998 }, (_, i) => i)))).toBeUndefined();
  });

  it('names limits.json_depth for nesting beyond it, without walking the rest', () => {
    expect(check('[[[[[[[[[1]]]]]]]]]')).toBe('request body: JSON nested deeper than limits.json_depth (8)');
    expect(jsonShapeProblem(Buffer.from('{"a":'.repeat(5_000_000)), limits)).toBe('request body: JSON nested deeper than limits.json_depth (8)');
  });

  it('names limits.json_values for more values than it, counting members and entries at every depth', () => {
    expect(check(JSON.stringify(Array.from({ length: 1000 }, (_, i) => i)))).toBe('request body: more JSON values than limits.json_values (1000)');
    expect(check(JSON.stringify({ env: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`K${i}`, 'v'])) }))).toMatch(/limits\.json_values \(1000\)/);
  });

  it('does not count brackets, commas or escaped quotes inside strings', () => {
    const noisy = JSON.stringify({ s: '[[[[[[[[[[,,,,,,{{{{{{{{{{' + '\\"[[[['.repeat(500) + '\\\\', t: '"]]]]"' });
    expect(check(noisy)).toBeUndefined();
    // An unterminated string is left to JSON.parse to name.
    expect(check('{"a":"[[[[[[[[[[[[')).toBeUndefined();
  });
});
