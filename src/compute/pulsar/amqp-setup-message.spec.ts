import { buildExecutionPlan } from '../../engine/execution-plan';
import type { TaskRecord } from '../../domain/tes-task';
import { collectedNames, relayBase, relayKey, relayKeyMatches, setupMessage } from './amqp-setup-message';

const task = {
  id: 't1',
  state: 'QUEUED',
  inputs: [
    { path: '/in/a.txt', content: 'A' },
    { path: '/in/b.txt', url: 'http://files.example.org/b.txt' },
  ],
  outputs: [
    { path: '/out/result.txt', url: 'http://files.example.org/result.txt', type: 'FILE' },
    { path: '/out/dir', url: 'http://files.example.org/dir/', type: 'DIRECTORY' },
    { path: '/out/*.log', url: 'http://files.example.org/logs/', type: 'FILE', path_prefix: '/out/' },
  ],
  executors: [{ image: 'alpine', command: ['true'] }],
} as unknown as TaskRecord;

describe('the AMQP setup message', () => {
  it('keys staging URLs by task and attempt under the secret', () => {
    const key = relayKey('s', 't1', 1);
    expect(relayKeyMatches('s', 't1', 1, key)).toBe(true);
    expect(relayKeyMatches('s', 't1', 2, key)).toBe(false);
    expect(relayKeyMatches('other', 't1', 1, key)).toBe(false);
    expect(relayKeyMatches('s', 't1', 1, key.slice(1))).toBe(false);
  });

  it('collects exactly the outputs and tesp bookkeeping, as Python re.match reads the patterns', () => {
    const patterns = collectedNames(buildExecutionPlan(task).outputs).map((p) => new RegExp(`^(?:${p})`));
    const collected = (name: string) => patterns.some((p) => p.test(name));
    for (const name of ['tesp/progress', 'tesp/0.stdout', 'root/out/result.txt', 'root/out/dir/x', 'root/out/dir/sub/y', 'root/out/a.log']) expect([name, collected(name)]).toEqual([name, true]);
    for (const name of ['root/out/result.txt.bak', 'root/out/dirx', 'root/in/b.txt', 'root/out/sub/a.log', 'tesp/deep/x', 'command.sh']) expect([name, collected(name)]).toEqual([name, false]);
  });

  it('sends content as message actions and URL inputs through the staging URLs, with setup_params', () => {
    const relay = relayBase('http://tesp.example.org:8080/', 't1', 1, 'KEY');
    const message = setupMessage(buildExecutionPlan(task), { jobId: 't1-1', script: '#!/bin/bash\n', relay, inputFiles: [{ index: 1, relative: '', path: '/in/b.txt' }] }) as any;
    expect(message.setup_params).toEqual({ job_id: 't1-1', tool_id: 'tes-task', tool_version: '1.1' });
    const setup = message.remote_staging.setup;
    expect(setup[0]).toEqual({ name: 'tesp/job.sh', type: 'input', action: { action_type: 'message', contents: '#!/bin/bash\n' } });
    expect(setup).toContainEqual({ name: 'root/in/a.txt', type: 'input', action: { action_type: 'message', contents: 'A' } });
    expect(setup).toContainEqual({
      name: 'root/in/b.txt',
      type: 'input',
      action: { action_type: 'remote_transfer', path: '/tesp/inputs/1', source: { path: '/tesp/inputs/1' }, url: 'http://tesp.example.org:8080/tesp/relay/t1/1/KEY/inputs/1' },
    });
    expect(message.remote_staging.action_mapper.files_endpoint).toBe('http://tesp.example.org:8080/tesp/relay/t1/1/KEY/files');
    expect(message.remote_staging.client_outputs.dynamic_outputs).not.toEqual([]);
    expect(JSON.stringify(message)).not.toContain('files.example.org/b.txt');
  });
});
