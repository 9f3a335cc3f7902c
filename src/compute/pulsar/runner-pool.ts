import { AmqpLink } from '../../common/amqp-link';
import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/redact';
import type { RunnerEntry } from '../../config/runner-entries';
import type { BackendParameter } from '../../engine/backend-parameters';
import { BackendUnavailable } from '../compute-backend';
import { PulsarAmqpClient } from './pulsar-amqp-client';
import { PulsarRestClient, RunnerCapabilities } from './pulsar-rest-client';

// The runners of compute.pulsar.runners and whether each answers, checked every health_interval_ms, also while it
// is down, so a task waiting for a runner starts soon after it is back. A REST runner answers /healthz; an AMQP
// runner is up while its broker is connected and something consumes its setup queue. Runners on one broker share
// one connection.

interface RunnerBase {
  readonly entry: RunnerEntry;
  /** Undefined until the first check has answered or failed. */
  up?: boolean;
  /** Why the last check failed (no secrets). */
  down?: string;
  /** What a tesp runner says of itself; undefined for a real Pulsar. */
  capabilities?: RunnerCapabilities;
  /** Tasks this replica has on it now. */
  active: number;
}

export interface RestRunner extends RunnerBase {
  readonly transport: 'rest';
  readonly client: PulsarRestClient;
}

export interface AmqpRunner extends RunnerBase {
  readonly transport: 'amqp';
  readonly amqp: PulsarAmqpClient;
}

export type Runner = RestRunner | AmqpRunner;

/** The wait key of a task that may run on any runner. */
export const ANY_RUNNER = '*';

export class RunnerPool {
  readonly runners: ReadonlyMap<string, Runner>;
  private timer?: NodeJS.Timeout;
  private firstCheck?: Promise<void>;

  private readonly links = new Map<string, AmqpLink>();

  constructor(
    entries: readonly RunnerEntry[],
    private readonly settings: { healthIntervalMs: number; requestTimeoutMs: number },
    private readonly logger: Logger,
  ) {
    this.runners = new Map(entries.map((entry): [string, Runner] => {
      if (entry.transport === 'rest') return [entry.name, { transport: 'rest', entry, client: new PulsarRestClient(entry, settings.requestTimeoutMs), active: 0 }];
      let link = this.links.get(entry.baseUrl);
      if (!link) {
        link = new AmqpLink(entry.baseUrl, entry.brokerLabel ?? entry.name, logger, { prefetch: 32 });
        this.links.set(entry.baseUrl, link);
      }
      return [entry.name, { transport: 'amqp', entry, amqp: new PulsarAmqpClient(link, entry.manager, settings.requestTimeoutMs), active: 0 }];
    }));
  }

  get amqpRunners(): AmqpRunner[] {
    return [...this.runners.values()].filter((runner): runner is AmqpRunner => runner.transport === 'amqp');
  }

  /** The `runner` backend parameter: one of the configured names. */
  get parameter(): BackendParameter {
    const names = [...this.runners.keys()];
    return {
      key: 'runner',
      description: `the Pulsar runner to run on: ${names.join(', ') || '(none configured)'}; absent: the least busy one that answers`,
      problem: (value) => (this.runners.has(value) ? undefined : `must be one of the configured runners (${names.join(', ') || 'none'}), got "${value}"`),
    };
  }

  /** Checks every runner now and then every interval. */
  start(): Promise<void> {
    this.firstCheck ??= (async () => {
      await Promise.all([...this.links.values()].map((link) => link.start(Math.min(this.settings.requestTimeoutMs, 5000))));
      await this.checkAll();
    })();
    this.timer ??= setInterval(() => void this.checkAll(), this.settings.healthIntervalMs);
    this.timer.unref();
    return this.firstCheck;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.runners.values()].map((runner) => (runner.transport === 'rest' ? runner.client.close() : undefined)));
    await Promise.all([...this.links.values()].map((link) => link.close()));
  }

  /** Whether a task waiting for `key` (a runner name, or ANY_RUNNER) could be placed now. */
  available(key: string): boolean {
    if (key === ANY_RUNNER) return [...this.runners.values()].some((runner) => runner.up);
    return this.runners.get(key)?.up === true;
  }

  /**
   * The runner for a task: the one its `runner` parameter names, or the least busy runner that answers (a tesp
   * runner's own count of jobs breaks ties). Throws BackendUnavailable when it cannot be placed now.
   */
  async pick(named: string | undefined): Promise<Runner> {
    await this.start();
    if (named !== undefined) {
      const runner = this.runners.get(named);
      if (!runner) throw new Error(`runner "${named}" is not configured (compute.pulsar.runners)`);
      if (!runner.up) throw new BackendUnavailable(named, `runner ${named} does not answer (${runner.down ?? 'not checked yet'}); the task starts when it is back`);
      return runner;
    }
    const up = [...this.runners.values()].filter((runner) => runner.up);
    if (up.length === 0) {
      const why = [...this.runners.values()].map((runner) => `${runner.entry.name}: ${runner.down ?? 'not checked yet'}`).join('; ');
      throw new BackendUnavailable(ANY_RUNNER, `no runner answers (${why || 'none configured'}); the task starts when one is back`);
    }
    const load = (runner: Runner) => runner.active * 1000 + (runner.capabilities ? runner.capabilities.active_jobs + runner.capabilities.queued_jobs : 0);
    return up.reduce((best, runner) => (load(runner) < load(best) ? runner : best));
  }

  /** Marks a runner down after a failed request, until the next check finds it up. */
  markDown(runner: Runner, reason: string): void {
    if (runner.up !== false) this.logger.warn({ runner: runner.entry.name, reason }, 'runner does not answer');
    runner.up = false;
    runner.down = reason;
  }

  private async checkAll(): Promise<void> {
    await Promise.all([...this.runners.values()].map((runner) => this.check(runner)));
  }

  private async check(runner: Runner): Promise<void> {
    if (runner.transport === 'amqp') return this.checkAmqp(runner);
    try {
      await runner.client.healthz();
      runner.capabilities = await runner.client.capabilities();
      if (runner.up !== true) this.logger.info({ runner: runner.entry.name, tesp_runner: runner.capabilities?.tesp_runner ?? null }, 'runner answers');
      runner.up = true;
      runner.down = undefined;
    } catch (err) {
      this.markDown(runner, errorMessage(err));
    }
  }

  private async checkAmqp(runner: AmqpRunner): Promise<void> {
    const { link, queues } = runner.amqp;
    if (!link.connected) return this.markDown(runner, `broker ${link.label} is not reachable (${link.lastError ?? 'connecting'})`);
    const consumers = await runner.amqp.consumers();
    if (!consumers) return this.markDown(runner, `nothing consumes ${queues.setup} on broker ${link.label} (is the runner started?)`);
    if (runner.up !== true) this.logger.info({ runner: runner.entry.name, broker: link.label, queue: queues.setup }, 'runner listens on its queue');
    runner.up = true;
    runner.down = undefined;
  }
}
