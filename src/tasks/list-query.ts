import { DomainError, ErrorCode } from '../domain/domain-error';
import type { TagFilter, TaskListQuery } from '../persistence/task-repository';
import { ALL_STATES, TaskView, TesState } from '../domain/tes-task';
import { limitProblem, RequestLimits } from './request-limits';

export const DEFAULT_PAGE_SIZE = 256;
export const MAX_PAGE_SIZE = 2048;

type Query = Record<string, unknown>;

const invalid = (message: string) => new DomainError(ErrorCode.InvalidArgument, message);

function single(query: Query, key: string): string | undefined {
  const v = query[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalid(`${key}: give it once`);
  return v;
}

function many(query: Query, key: string): string[] {
  const v = query[key];
  if (v === undefined) return [];
  const list = Array.isArray(v) ? v : [v];
  if (list.some((item) => typeof item !== 'string')) throw invalid(`${key}: must be plain values`);
  return list as string[];
}

/** `view`, case-insensitive; MINIMAL when absent. */
export function parseView(query: Query): TaskView {
  const raw = single(query, 'view');
  if (raw === undefined || raw === '') return TaskView.MINIMAL;
  const view = raw.toUpperCase() as TaskView;
  if (!Object.values(TaskView).includes(view)) throw invalid(`view: must be one of MINIMAL, BASIC, FULL, got "${raw}"`);
  return view;
}

export interface ListRequest {
  view: TaskView;
  query: TaskListQuery;
}

/** A string parameter within a character limit (checked before it is quoted or used). */
function bounded(value: string | undefined, key: string, limit: 'name_chars' | 'tag_key_chars' | 'tag_value_chars', limits: RequestLimits): string | undefined {
  if (value !== undefined && value.length > limits[limit]) throw invalid(`${key}: ${limitProblem(value.length, 'characters', limit, limits)}`);
  return value;
}

export function parseListQuery(query: Query, limits: RequestLimits): ListRequest {
  const view = parseView(query);
  const rawState = single(query, 'state');
  // Case-insensitive like view; an empty value is no filter.
  const state = rawState ? (rawState.toUpperCase() as TesState) : undefined;
  if (state !== undefined && !ALL_STATES.includes(state)) {
    throw invalid(`state: must be one of ${ALL_STATES.join(', ')}, got "${rawState}"`);
  }
  const rawSize = single(query, 'page_size');
  let pageSize = DEFAULT_PAGE_SIZE;
  if (rawSize !== undefined && rawSize !== '') {
    pageSize = /^\d+$/.test(rawSize) ? Number(rawSize) : NaN;
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
      throw invalid(`page_size: must be an integer from 1 to ${MAX_PAGE_SIZE}, got "${rawSize}"`);
    }
  }
  const keys = many(query, 'tag_key');
  const values = many(query, 'tag_value');
  // Each tag filter is a join or a subquery in the store: a bounded number keeps every list cheap.
  if (keys.length > limits.list_tag_filters) throw invalid(`tag_key: ${limitProblem(keys.length, 'parameters', 'list_tag_filters', limits)}`);
  if (values.length > keys.length) throw invalid('tag_value: more values than tag_key parameters');
  const tags: TagFilter[] = keys.map((key, i) => {
    if (key === '') throw invalid(`tag_key[${i}]: must not be empty`);
    bounded(key, `tag_key[${i}]`, 'tag_key_chars', limits);
    const value = bounded(values[i], `tag_value[${i}]`, 'tag_value_chars', limits);
    return value ? { key, value } : { key };
  });
  const namePrefix = bounded(single(query, 'name_prefix'), 'name_prefix', 'name_chars', limits);
  const pageToken = single(query, 'page_token');
  return {
    view,
    query: {
      namePrefix: namePrefix || undefined,
      state,
      tags,
      pageSize,
      // An empty token is the first page, as an absent one is (some generated clients always send the key).
      pageToken: pageToken || undefined,
      fields: view === TaskView.MINIMAL ? 'minimal' : view === TaskView.BASIC ? 'basic' : 'full',
    },
  };
}
