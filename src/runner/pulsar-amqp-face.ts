import type { ConsumeMessage } from 'amqplib';
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { AmqpLink, parseJsonMessage } from '../common/amqp-link';
import type { Logger } from '../common/logger';
import { errorMessage } from '../common/redact';
import { isSafeJobId } from '../engine/job-layout';
import { PULSAR_EXCHANGE, pulsarQueues } from '../engine/pulsar-queues';
import type { JobEvents, JobManager } from './job-manager';
import { JobState, STATE_FILES } from './job-state';
import { statusBody } from './job-status';

// `tesp runner` in Pulsar's message-queue mode (pulsar-protocol reference §12): consumes its manager's setup, kill
// and status queues (and tesp's clean extension), and publishes status updates the way Pulsar does: `running` once,
// the final status after stage-out, none for cancelled; a status request answers with the current status. A final
// status is recorded as published (status_published) only once the broker confirmed it (and, with acknowledgements
// on, once the consumer answered its acknowledge_uuid), so one that was lost is published again, also after a
// restart. Malformed messages are dropped with a log line; nothing stalls a queue.

export interface AmqpFaceOptions {
  manager: string;
  acknowledge: boolean;
  ackRepublishMs: number;
  version: string;
  logger: Logger;
}

interface PendingAck {
  jobId: string;
  payload: Record<string, unknown>;
  sentAt: number;
}

/** How long a status update waits for a broker that is away before it is left for the next start. */
const PUBLISH_PATIENCE_MS = 24 * 3600_000;

export class PulsarAmqpFace implements JobEvents {
  private readonly queues;
  private manager?: JobManager;
  private readonly pending = new Map<string, PendingAck>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly link: AmqpLink,
    private readonly options: AmqpFaceOptions,
  ) {
    this.queues = pulsarQueues(options.manager);
    const q = this.queues;
    link.addTopology(async (channel) => {
      await channel.assertExchange(PULSAR_EXCHANGE, 'direct', { durable: true });
      const own = [q.setup, q.kill, q.status, q.clean, q.statusUpdate, ...(options.acknowledge ? [q.statusUpdateAck] : [])];
      for (const queue of own) {
        await channel.assertQueue(queue, { durable: true, autoDelete: false });
        await channel.bindQueue(queue, PULSAR_EXCHANGE, queue);
      }
    });
  }

  /** Starts consuming for `manager`'s jobs; the manager has recovered its jobs already. */
  async start(manager: JobManager): Promise<void> {
    this.manager = manager;
    const q = this.queues;
    this.link.consume(q.setup, (message) => this.handle(q.setup, message, (body) => this.setup(body)));
    this.link.consume(q.kill, (message) => this.handle(q.kill, message, (body) => this.withJob(body, (id) => manager.cancel(id))));
    this.link.consume(q.status, (message) => this.handle(q.status, message, (body) => this.withJob(body, (id) => this.publishStatus(id))));
    this.link.consume(q.clean, (message) => this.handle(q.clean, message, (body) => this.withJob(body, (id) => manager.clean(id))));
    if (this.options.acknowledge) {
      this.link.consume(q.statusUpdateAck, (message) => this.handle(q.statusUpdateAck, message, (body) => this.acknowledged(body)));
      // Pulsar checks every 15 s; a shorter republish time is checked accordingly more often.
      this.timer = setInterval(() => void this.republish(), Math.min(15_000, Math.max(100, this.options.ackRepublishMs / 2)));
      this.timer.unref();
    }
    await this.link.start(5000);
    await this.publishUnpublished();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.link.close();
  }

  running(id: string): void {
    void this.ifViaBroker(id, () => this.publish(id, { complete: 'false', status: 'running', job_id: id }, false));
  }

  ended(id: string, status: string): void {
    if (status === 'cancelled') return; // as Pulsar: a kill is followed by a status request, not an update
    void this.ifViaBroker(id, () => this.publishStatus(id, true));
  }

  /** Jobs that came over REST report over REST only. */
  private async ifViaBroker(id: string, publish: () => Promise<void>): Promise<void> {
    if (await new JobState(this.manager!.jobDir(id)).has(STATE_FILES.viaBroker)) await publish();
  }

  private async handle(queue: string, message: ConsumeMessage, work: (body: Record<string, unknown>) => Promise<void>): Promise<void> {
    const parsed = parseJsonMessage(message);
    if ('problem' in parsed) {
      this.options.logger.warn({ queue, problem: parsed.problem }, 'dropped a malformed message');
      return;
    }
    try {
      await work(parsed.body);
    } catch (err) {
      this.options.logger.warn({ queue, err: errorMessage(err) }, 'dropped a message that could not be carried out');
    }
  }

  private async withJob(body: Record<string, unknown>, work: (id: string) => Promise<void>): Promise<void> {
    const id = body.job_id;
    if (typeof id !== 'string' || !isSafeJobId(id)) throw new Error(`job_id ${JSON.stringify(id)?.slice(0, 80)} is missing or not accepted`);
    await work(id);
  }

  private async setup(body: Record<string, unknown>): Promise<void> {
    await this.withJob(body, async (id) => {
      if (typeof body.command_line !== 'string' || body.command_line === '') throw new Error(`the setup of job ${id} has no command_line`);
      const setupParams = typeof body.setup_params === 'object' && body.setup_params !== null ? (body.setup_params as Record<string, unknown>) : body.setup === true ? { job_id: id } : undefined;
      if (!setupParams || Object.keys(setupParams).length === 0) {
        // As Pulsar: without setup_params there is no job directory, and the job fails at once.
        await this.publish(id, { complete: 'true', status: 'failed', job_id: id, returncode: null, job_stderr: 'the setup message has no setup_params' }, false);
        return;
      }
      const { remote_staging, submit_params, dependencies_description } = body;
      try {
        await this.manager!.setup(id);
        await new JobState(this.manager!.jobDir(id)).write(STATE_FILES.viaBroker, '');
        await this.manager!.submit(id, {
          commandLine: body.command_line,
          env: Array.isArray(body.env) ? body.env : [],
          setupParams,
          submitExtras: typeof submit_params === 'object' && submit_params !== null ? (submit_params as Record<string, unknown>) : {},
          launchConfig: { remote_staging, submit_params, dependencies_description, setup_params: setupParams },
        });
      } catch (err) {
        this.options.logger.warn({ job_id: id, err: errorMessage(err) }, 'a job could not be set up');
        await this.publish(id, { complete: 'true', status: 'failed', job_id: id, returncode: null, job_stderr: `tesp runner: ${errorMessage(err)}` }, false);
      }
    });
  }

  /** Publishes the job's current status (the full one once it is over). */
  private async publishStatus(id: string, final = false): Promise<void> {
    const manager = this.manager!;
    const status = await manager.status(id);
    const dir = manager.jobDir(id);
    const body = await statusBody({ id, dir, status, version: this.options.version, systemProperties: {} });
    if (status === 'failed') {
      // Pulsar keeps a stage-in failure where no client can read it; tesp runner says it.
      const reason = await new JobState(dir).read(STATE_FILES.stageInFailure);
      if (reason) body.job_stderr = `${String(body.job_stderr ?? '')}stage-in failed: ${reason}\n`;
    }
    await this.publish(id, body, final);
  }

  private async publish(id: string, payload: Record<string, unknown>, final: boolean): Promise<void> {
    try {
      if (this.options.acknowledge && final) {
        const uuid = randomUUID();
        Object.assign(payload, { acknowledge_uuid: uuid, acknowledge_queue: 'status_update_ack', acknowledge_submit_queue: 'status_update' });
        this.pending.set(uuid, { jobId: id, payload, sentAt: Date.now() });
      }
      await this.link.publish(PULSAR_EXCHANGE, this.queues.statusUpdate, payload, PUBLISH_PATIENCE_MS);
      if (final && !this.options.acknowledge) await this.markPublished(id);
    } catch (err) {
      this.options.logger.warn({ job_id: id, err: errorMessage(err) }, 'could not publish a status update; it is published again at the next start');
    }
  }

  private async acknowledged(body: Record<string, unknown>): Promise<void> {
    const uuid = body.acknowledge_uuid_response;
    if (typeof uuid !== 'string') throw new Error('an acknowledgement without acknowledge_uuid_response');
    const entry = this.pending.get(uuid);
    if (!entry) return;
    this.pending.delete(uuid);
    await this.markPublished(entry.jobId);
  }

  private async republish(): Promise<void> {
    const due = Date.now() - this.options.ackRepublishMs;
    for (const [uuid, entry] of this.pending) {
      if (entry.sentAt > due || !this.link.connected) continue;
      entry.sentAt = Date.now();
      this.options.logger.info({ job_id: entry.jobId, acknowledge_uuid: uuid }, 'a status update was not acknowledged: publishing it again');
      await this.link.publish(PULSAR_EXCHANGE, this.queues.statusUpdate, { ...entry.payload, force_noack: true }, 5000).catch(() => undefined);
    }
  }

  private async markPublished(id: string): Promise<void> {
    await new JobState(this.manager!.jobDir(id)).write(STATE_FILES.statusPublished, '').catch(() => undefined); // cleaned meanwhile
  }

  /** Final statuses not yet confirmed published (the runner stopped first): published now. */
  private async publishUnpublished(): Promise<void> {
    const manager = this.manager!;
    const stagingDir = path.dirname(manager.jobDir('x'));
    for (const id of (await fs.readdir(stagingDir).catch(() => [] as string[])).filter(isSafeJobId)) {
      const state = new JobState(manager.jobDir(id));
      const final = await state.finalStatus();
      if (!final || final === 'cancelled' || !(await state.has(STATE_FILES.viaBroker)) || (await state.has(STATE_FILES.statusPublished))) continue;
      void this.publishStatus(id, true);
    }
  }
}
