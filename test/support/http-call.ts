// One small HTTP helper for API tests: sends JSON (or a raw string) and reads the reply as JSON when it is JSON.

export interface Reply {
  status: number;
  json: any;
  text: string;
  headers: Headers;
}

export async function call(root: string, method: string, pathname: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const init: RequestInit & { headers: Record<string, string> } = { method, headers: { ...headers }, redirect: 'manual' };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${root}${pathname}`, init);
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}
