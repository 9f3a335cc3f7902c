// `tesp runner` on its message queues alone (no HTTP port), driven by this test over the real RabbitMQ as Pulsar's
// clients drive a Pulsar (pulsar-protocol reference §12): a setup message, status updates pushed, acknowledgements.
import * as amqp from 'amqplib';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { pulsarQueues } from '../../src/engine/pulsar-queues';
import { describeWhen, tcpOpen } from '../support/service-check';
import { RunnerProcess } from './runner-process';

const MANAGER = `tr${Date.now().toString(36)}`;
const q = pulsarQueues(MANAGER);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describeWhen('tesp runner over AMQP with acknowledgements', tcpOpen(5672), 'no RabbitMQ on 127.0.0.1:5672', () => {
  let broker: amqp.ChannelModel;
  let channel: amqp.Channel;
  let runner: RunnerProcess;
  const updates: Array<Record<string, any>> = [];

  beforeAll(async () => {
    broker = await amqp.connect('amqp://guest:guest@127.0.0.1:5672/');
    channel = await broker.createChannel();
    runner = new RunnerProcess(RunnerProcess.tempDataDir(), {
      TESP_RUNNER__AMQP__URL: 'amqp://guest:guest@127.0.0.1:5672/',
      TESP_RUNNER__AMQP__MANAGER: MANAGER,
      TESP_RUNNER__AMQP__ACKNOWLEDGE: 'true',
      TESP_RUNNER__AMQP__ACK_REPUBLISH_MS: '500',
    });
    await runner.start();
    await channel.consume(q.statusUpdate, (message) => {
      if (!message) return;
      expect(message.properties.contentType).toBe('application/json');
      updates.push(JSON.parse(message.content.toString()));
      channel.ack(message);
    });
  });

  afterAll(async () => {
    await runner?.stop();
    for (const queue of Object.values(q)) await channel?.deleteQueue(queue).catch(() => undefined);
    await broker?.close().catch(() => undefined);
    runner?.cleanup();
  });

  it('opens no HTTP port, runs a job from a setup message and republishes its final status until it is acknowledged', async () => {
    expect(runner.port).toBe(0);
    const setup = { job_id: 'ackjob-1', command_line: 'echo out-$FOO', setup_params: { job_id: 'ackjob-1' }, env: [{ name: 'FOO', value: 'bar' }] };
    channel.publish('pulsar', q.setup, Buffer.from(JSON.stringify(setup)), { contentType: 'application/json', persistent: true });
    const deadline = Date.now() + 30_000;
    while (updates.filter((u) => u.status === 'complete').length < 2 && Date.now() < deadline) await sleep(100);
    const finals = updates.filter((u) => u.status === 'complete');
    expect(finals.length).toBeGreaterThanOrEqual(2);
    const [first, again] = finals;
    expect(first).toMatchObject({ job_id: 'ackjob-1', complete: 'true', returncode: 0, job_stdout: 'out-bar\n', acknowledge_queue: 'status_update_ack', acknowledge_submit_queue: 'status_update' });
    expect(first).not.toHaveProperty('force_noack');
    expect(again).toMatchObject({ acknowledge_uuid: first.acknowledge_uuid, force_noack: true });
    channel.publish('pulsar', q.statusUpdateAck, Buffer.from(JSON.stringify({ acknowledge_uuid_response: first.acknowledge_uuid })), { contentType: 'application/json' });
    await sleep(300);
    const settled = updates.length;
    await sleep(2000);
    expect(updates.length).toBe(settled);
    expect(existsSync(path.join(runner.jobDir('ackjob-1'), 'status_published'))).toBe(true);
  });

  it('answers a status request for a job it does not know with lost, and fails a setup without setup_params at once', async () => {
    updates.length = 0;
    channel.publish('pulsar', q.status, Buffer.from(JSON.stringify({ job_id: 'never-seen' })), { contentType: 'application/json' });
    channel.publish('pulsar', q.setup, Buffer.from(JSON.stringify({ job_id: 'nosetup-1', command_line: 'true' })), { contentType: 'application/json' });
    const deadline = Date.now() + 10_000;
    while (updates.length < 2 && Date.now() < deadline) await sleep(100);
    expect(updates.find((u) => u.job_id === 'never-seen')).toMatchObject({ status: 'lost', complete: 'true' });
    expect(updates.find((u) => u.job_id === 'nosetup-1')).toMatchObject({ status: 'failed', complete: 'true' });
  });
});
