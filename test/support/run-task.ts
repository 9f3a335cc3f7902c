// Creates a task through the API of an in-process app and waits until it ends; answers that are not 200 come
// back as they are, with their status.
import type { InProcessApp } from './in-process-app';

const TERMINAL = ['COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED'];

export async function runTask(server: InProcessApp, task: unknown, timeoutMs = 120_000): Promise<any> {
  const base = `${server.root}/ga4gh/tes/v1`;
  const created = await fetch(`${base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(task) });
  const body = (await created.json()) as any;
  if (created.status !== 200) return { status: created.status, ...body };
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const view = (await (await fetch(`${base}/tasks/${body.id}?view=FULL`)).json()) as any;
    if (TERMINAL.includes(view.state)) return view;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`task ${body.id} did not end within ${timeoutMs} ms`);
}
