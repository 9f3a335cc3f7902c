import { DomainError } from '../domain/domain-error';
import { loadSettings } from '../config/settings.loader';
import { parseListQuery as parseWith, parseView } from './list-query';
import type { RequestLimits } from './request-limits';

const LIMITS = loadSettings({ env: {} }).limits;
const parseListQuery = (query: Record<string, unknown>, limits: RequestLimits = LIMITS) => parseWith(query, limits);
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

describe('list query limits', () => {
  it('bounds the number of tag filters, naming limits.list_tag_filters', () => {
    const keys = (n: number) => Array.from({ length: n }, (_, i) => `k${i}`);
    expect(parseListQuery({ tag_key: keys(32) }).query.tags).toHaveLength(32);
    expect(() => parseListQuery({ tag_key: keys(50) })).toThrow('tag_key: 50 parameters, more than limits.list_tag_filters (32)');
    expect(() => parseListQuery({ tag_key: keys(1000), tag_value: keys(1000) })).toThrow(/limits\.list_tag_filters \(32\)/);
  });

  it('bounds the length of name_prefix, tag keys and tag values', () => {
    const long = 'a'.repeat(LIMITS.name_chars + 1);
    expect(() => parseListQuery({ name_prefix: long })).toThrow(`name_prefix: ${long.length} characters, more than limits.name_chars (${LIMITS.name_chars})`);
    expect(() => parseListQuery({ tag_key: 'k'.repeat(LIMITS.tag_key_chars + 1) })).toThrow(/tag_key\[0\]: \d+ characters, more than limits\.tag_key_chars/);
    expect(() => parseListQuery({ tag_key: 'k', tag_value: 'v'.repeat(LIMITS.tag_value_chars + 1) })).toThrow(/tag_value\[0\]: \d+ characters, more than limits\.tag_value_chars/);
  });
});
