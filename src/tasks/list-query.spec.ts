import { DomainError } from '../domain/domain-error';
import { parseListQuery, parseView } from './list-query';
import { TaskView } from '../domain/tes-task';

describe('list query parsing', () => {
  it('defaults to MINIMAL and 256 rows', () => {
    expect(parseListQuery({})).toEqual({ view: TaskView.MINIMAL, query: { tags: [], pageSize: 256, fields: 'minimal', namePrefix: undefined, state: undefined, pageToken: undefined } });
  });

  it('reads the view case-insensitively', () => {
    expect(parseView({ view: 'full' })).toBe(TaskView.FULL);
    expect(() => parseView({ view: 'ALL' })).toThrow(DomainError);
  });

  it('pairs tag keys and values by position, a missing value meaning the key exists', () => {
    expect(parseListQuery({ tag_key: ['a', 'b', 'c'], tag_value: ['1', ''] }).query.tags).toEqual([{ key: 'a', value: '1' }, { key: 'b' }, { key: 'c' }]);
    expect(parseListQuery({ tag_key: 'solo' }).query.tags).toEqual([{ key: 'solo' }]);
  });

  it('bounds page_size to 1..2048', () => {
    expect(parseListQuery({ page_size: '2048' }).query.pageSize).toBe(2048);
    for (const bad of ['0', '2049', '-1', '1.5', 'ten']) expect(() => parseListQuery({ page_size: bad })).toThrow(/page_size/);
  });

  it('reads state case-insensitively and treats empty values as absent', () => {
    expect(parseListQuery({ state: 'complete' }).query.state).toBe('COMPLETE');
    const { query } = parseListQuery({ state: '', page_token: '', name_prefix: '', page_size: '' });
    expect(query).toMatchObject({ state: undefined, pageToken: undefined, namePrefix: undefined, pageSize: 256 });
    expect(parseListQuery({ page_token: 'abc' }).query.pageToken).toBe('abc');
  });

  it('refuses unknown states and repeated single-valued parameters', () => {
    expect(() => parseListQuery({ state: 'FINISHED' })).toThrow(/state: must be one of/);
    expect(() => parseListQuery({ view: ['FULL', 'BASIC'] })).toThrow(/view: give it once/);
  });
});
