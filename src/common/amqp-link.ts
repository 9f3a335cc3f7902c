import * as amqp from 'amqplib';
import type { Logger } from './logger';
import { errorMessage } from './redact';

// One AMQP connection that stays up: it reconnects with back-off when the broker goes away, declares its topology
// again and restarts its consumers on every connect. Publishes are persistent JSON (content type
// application/json, utf-8: Pulsar drops a message without one and dies on a non-JSON one) on a confirm channel,
// and wait for the broker's confirm; while the broker is away they wait for the next connect. Used by the API's
// pulsar backend and by `tesp runner`; the URL carries credentials, so only `label` is ever logged.

export type Topology = (channel: amqp.ConfirmChannel) => Promise<void>;

/** Handles one delivery; resolve to ack it, or to 'requeue' to have it delivered again (after a pause). */
export type DeliveryHandler = (message: amqp.ConsumeMessage) => Promise<void | 'requeue'>;

interface Consumer {
  queue: string;
  handler: DeliveryHandler;
}

const BACKOFF_START_MS = 250;
const BACKOFF_MAX_MS = 5000;
/** A delivery its handler wants again (the store was busy) comes back after this pause. */
const REQUEUE_PAUSE_MS = 1000;

export class AmqpLink {
  private connection?: amqp.ChannelModel;
  private channel?: amqp.ConfirmChannel;
  private connecting?: Promise<void>;
  private readonly topologies: Topology[] = [];
  private readonly consumers: Consumer[] = [];
  private readonly waiters = new Set<() => void>();
  private readonly connectHooks: Array<() => void> = [];
  private closed = false;
  private everConnected = false;
  private delay = BACKOFF_START_MS;
  private reconnectTimer?: NodeJS.Timeout;
  /** Why the last connect failed or the connection dropped (no credentials). */
  lastError?: string;

  constructor(
    private readonly url: string,
    readonly label: string,
    private readonly logger: Logger,
    private readonly options: { prefetch?: number } = {},
  ) {}

  get connected(): boolean {
    return this.channel !== undefined;
  }

  /** Topology declared on every connect, before consumers start and before anything is published. */
  addTopology(topology: Topology): void {
    this.topologies.push(topology);
    if (this.channel) void topology(this.channel).catch((err: unknown) => this.dropped(err));
  }

  /** Called after every connect but the first (what was asked for while the broker was away may be lost). */
  onConnect(hook: () => void): void {
    this.connectHooks.push(hook);
  }

  /** Consumes a queue with manual acks, now (when connected) and after every reconnect. */
  consume(queue: string, handler: DeliveryHandler): void {
    const consumer = { queue, handler };
    this.consumers.push(consumer);
    if (this.channel) void this.startConsumer(this.channel, consumer).catch((err: unknown) => this.dropped(err));
  }

  /** Connects now (and keeps reconnecting); resolves after the first connect or when `timeoutMs` has passed. */
  async start(timeoutMs = 0): Promise<void> {
    this.connectSoon(0);
    if (timeoutMs > 0) await this.untilConnected(timeoutMs).catch(() => undefined);
  }

  /** Resolves when connected; rejects after `timeoutMs` (or when the link is closed) with the last error. */
  untilConnected(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.channel) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.waiters.delete(onConnect);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onConnect = () => done();
      const onAbort = () => done(new Error('aborted'));
      const timer = setTimeout(() => done(new Error(`broker ${this.label} is not reachable (${this.lastError ?? 'connecting'})`)), timeoutMs);
      this.waiters.add(onConnect);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Publishes a JSON message persistently and resolves once the broker confirmed it. While the broker is away it
   * waits (up to `timeoutMs`) for the next connect and tries again; a publish the broker did not confirm is sent
   * again (consumers are idempotent).
   */
  async publish(exchange: string, routingKey: string, body: unknown, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const content = Buffer.from(JSON.stringify(body));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.closed) throw new Error(`the link to broker ${this.label} is closed`);
      await this.untilConnected(Math.max(1, deadline - Date.now()), signal);
      const channel = this.channel!;
      try {
        await new Promise<void>((resolve, reject) => {
          channel.publish(exchange, routingKey, content, { contentType: 'application/json', contentEncoding: 'utf-8', persistent: true, deliveryMode: 2 }, (err) => (err ? reject(err) : resolve()));
        });
        return;
      } catch (err) {
        if (Date.now() >= deadline) throw new Error(`broker ${this.label} did not confirm a message to ${routingKey}: ${errorMessage(err)}`);
        this.dropped(err);
      }
    }
  }

  /** How many consumers a queue has now; undefined when not connected or the queue does not exist. */
  async consumerCount(queue: string): Promise<number | undefined> {
    if (!this.connection || !this.channel) return undefined;
    // A check of a missing queue closes its channel: use a channel of its own.
    const probe = await this.connection.createChannel().catch(() => undefined);
    if (!probe) return undefined;
    probe.on('error', () => undefined);
    try {
      return (await probe.checkQueue(queue)).consumerCount;
    } catch {
      return undefined;
    } finally {
      await probe.close().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    await this.connecting?.catch(() => undefined);
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    await connection?.close().catch(() => undefined);
  }

  private connectSoon(delayMs: number): void {
    if (this.closed || this.connecting || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connecting = this.connect().then((connected) => {
        this.connecting = undefined;
        if (!connected) {
          this.connectSoon(this.delay);
          this.delay = Math.min(this.delay * 2, BACKOFF_MAX_MS);
        }
      });
    }, delayMs); // not unref'd: a runner with no HTTP port lives on its broker link
  }

  /** One attempt; false when it failed (the caller schedules the next). */
  private async connect(): Promise<boolean> {
    let connection: amqp.ChannelModel | undefined;
    try {
      connection = await amqp.connect(this.url, { timeout: 10_000 });
      connection.on('error', () => undefined); // 'close' follows and handles it
      connection.on('close', (err?: unknown) => {
        if (this.connection === connection) this.dropped(err ?? new Error('connection closed'));
      });
      const channel = await connection.createConfirmChannel();
      channel.on('error', () => undefined);
      channel.on('close', () => {
        if (this.channel === channel) this.dropped(new Error('channel closed'));
      });
      if (this.options.prefetch) await channel.prefetch(this.options.prefetch);
      for (const topology of this.topologies) await topology(channel);
      if (this.closed) {
        await connection.close().catch(() => undefined);
        return true;
      }
      this.connection = connection;
      this.channel = channel;
      for (const consumer of this.consumers) await this.startConsumer(channel, consumer);
      const again = this.everConnected;
      this.everConnected = true;
      this.logger.info({ broker: this.label }, again ? 'connected to the broker again' : 'connected to the broker');
      this.lastError = undefined;
      if (again) for (const hook of this.connectHooks) hook();
      this.delay = BACKOFF_START_MS;
      for (const waiter of [...this.waiters]) waiter();
      return true;
    } catch (err) {
      this.lastError = errorMessage(err);
      this.logger.warn({ broker: this.label, err: this.lastError, retryInMs: this.delay }, 'cannot connect to the broker');
      if (this.connection !== connection) await connection?.close().catch(() => undefined);
      this.connection = undefined;
      this.channel = undefined;
      return false;
    }
  }

  private async startConsumer(channel: amqp.ConfirmChannel, consumer: Consumer): Promise<void> {
    await channel.consume(consumer.queue, (message) => {
      if (!message) return; // the broker cancelled the consumer (queue deleted): the next connect starts it again
      void this.deliver(channel, consumer, message);
    }, { noAck: false });
  }

  private async deliver(channel: amqp.ConfirmChannel, consumer: Consumer, message: amqp.ConsumeMessage): Promise<void> {
    let outcome: void | 'requeue';
    try {
      outcome = await consumer.handler(message);
    } catch (err) {
      // A handler that throws did not store what the message says: have it again.
      this.logger.error({ broker: this.label, queue: consumer.queue, err: errorMessage(err) }, 'a message could not be handled; it will be delivered again');
      outcome = 'requeue';
    }
    if (this.channel !== channel) return; // that channel is gone: the broker delivers the message again anyway
    try {
      if (outcome === 'requeue') {
        await new Promise((resolve) => setTimeout(resolve, REQUEUE_PAUSE_MS).unref());
        if (this.channel === channel) channel.nack(message, false, true);
      } else {
        channel.ack(message);
      }
    } catch {
      // the channel closed meanwhile: unacked, so delivered again
    }
  }

  private dropped(err: unknown): void {
    if (this.closed) return;
    const hadChannel = this.channel !== undefined;
    this.lastError = errorMessage(err);
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    if (hadChannel) this.logger.warn({ broker: this.label, err: this.lastError }, 'lost the connection to the broker; reconnecting');
    void connection?.close().catch(() => undefined);
    this.connectSoon(this.delay);
    this.delay = Math.min(this.delay * 2, BACKOFF_MAX_MS);
  }
}

/** A message's body as JSON, or why it is not acceptable (content type, encoding, syntax). */
export function parseJsonMessage(message: amqp.ConsumeMessage): { body: Record<string, unknown> } | { problem: string } {
  const type = message.properties.contentType;
  if (type !== undefined && type !== 'application/json') return { problem: `content type ${JSON.stringify(String(type).slice(0, 60))} is not application/json` };
  let body: unknown;
  try {
    body = JSON.parse(message.content.toString('utf8'));
  } catch {
    return { problem: 'the body is not JSON' };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { problem: 'the body is not a JSON object' };
  return { body: body as Record<string, unknown> };
}
