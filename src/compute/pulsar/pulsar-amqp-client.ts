import type { AmqpLink } from '../../common/amqp-link';
import { ackRoutingKey, PULSAR_EXCHANGE, pulsarQueues, PulsarQueues } from '../../engine/pulsar-queues';

// Pulsar's message-queue mode for one runner (pulsar-protocol reference §12). tesp declares every queue it publishes to (durable, no arguments: exactly as Pulsar declares them,
// or the broker refuses one of the two declarations), so a message waits in its queue when the runner is away;
// `__status_update` is declared and bound before anything is published (Pulsar never declares it).

export class PulsarAmqpClient {
  readonly queues: PulsarQueues;

  constructor(
    readonly link: AmqpLink,
    readonly manager: string,
    private readonly publishTimeoutMs: number,
  ) {
    this.queues = pulsarQueues(manager);
    const q = this.queues;
    link.addTopology(async (channel) => {
      await channel.assertExchange(PULSAR_EXCHANGE, 'direct', { durable: true });
      for (const queue of [q.statusUpdate, q.setup, q.kill, q.status]) {
        await channel.assertQueue(queue, { durable: true, autoDelete: false });
        await channel.bindQueue(queue, PULSAR_EXCHANGE, queue);
      }
    });
  }

  /** A setup message (with setup_params: over AMQP there is no separate setup call). */
  setup(message: Record<string, unknown>, signal?: AbortSignal): Promise<void> {
    return this.link.publish(PULSAR_EXCHANGE, this.queues.setup, message, this.publishTimeoutMs, signal);
  }

  kill(jobId: string, timeoutMs = this.publishTimeoutMs): Promise<void> {
    return this.link.publish(PULSAR_EXCHANGE, this.queues.kill, { job_id: jobId }, timeoutMs);
  }

  /** Asks the runner to publish the job's current status (no update comes for cancelled or queued by itself). */
  requestStatus(jobId: string, timeoutMs = this.publishTimeoutMs): Promise<void> {
    return this.link.publish(PULSAR_EXCHANGE, this.queues.status, { job_id: jobId }, timeoutMs);
  }

  /** Asks a tesp runner to remove the job's directory (Pulsar has no clean message; see the README). */
  clean(jobId: string, timeoutMs = this.publishTimeoutMs): Promise<void> {
    return this.link.publish(PULSAR_EXCHANGE, this.queues.clean, { job_id: jobId }, timeoutMs);
  }

  acknowledge(acknowledgeQueue: string, uuid: string): Promise<void> {
    return this.link.publish(PULSAR_EXCHANGE, ackRoutingKey(this.manager, acknowledgeQueue), { acknowledge_uuid_response: uuid }, this.publishTimeoutMs);
  }

  /** How many consumers the runner's setup queue has: 0 when no runner listens now. */
  consumers(): Promise<number | undefined> {
    return this.link.consumerCount(this.queues.setup);
  }
}
