import { etagOf, ifNoneMatchNames } from './etag-reply';

describe('ETags', () => {
  const tag = etagOf('{"id":"a","state":"QUEUED"}');

  it('tags equal bodies alike and different bodies differently, as quoted strong tags', () => {
    expect(tag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    expect(etagOf('{"id":"a","state":"QUEUED"}')).toBe(tag);
    expect(etagOf('{"id":"a","state":"RUNNING"}')).not.toBe(tag);
  });

  it('reads If-None-Match as RFC 9110 asks for GET: lists, weak tags, and *', () => {
    expect(ifNoneMatchNames(undefined, tag)).toBe(false);
    expect(ifNoneMatchNames(tag, tag)).toBe(true);
    expect(ifNoneMatchNames(`W/${tag}`, tag)).toBe(true);
    expect(ifNoneMatchNames(`"other", ${tag}`, tag)).toBe(true);
    expect(ifNoneMatchNames('*', tag)).toBe(true);
    expect(ifNoneMatchNames('"other"', tag)).toBe(false);
    expect(ifNoneMatchNames(tag.slice(1, -1), tag)).toBe(false);
  });
});
