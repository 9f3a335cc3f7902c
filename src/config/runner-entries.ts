import { DomainError, ErrorCode } from '../domain/domain-error';
import { settingEntries } from './setting-entries';

// compute.pulsar.runners: "name=URL" entries, the URL's scheme picking the transport.
// REST: http(s)://[TOKEN@]host:port[/managers/MANAGER][?runtime=docker|apptainer|process]. The token travels as
//   Pulsar's `private_token` query parameter (as Galaxy turns the userinfo into it).
// AMQP: amqp(s)://user:password@host:port/vhost?manager=MANAGER[&runtime=...][&staging=direct|relay]: the broker the
//   runner listens on and the manager whose queues it consumes (pulsar_<manager>__setup, ...).
// Messages name the entry, never the token or the broker's password.

const KEY = 'compute.pulsar.runners';
/** Runner names appear in backend_parameters and service-info: plain words. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const RUNNER_RUNTIMES = ['docker', 'apptainer', 'process'] as const;
export type RunnerRuntime = (typeof RUNNER_RUNTIMES)[number];

export const RUNNER_STAGING = ['relay', 'direct'] as const;
export type RunnerStaging = (typeof RUNNER_STAGING)[number];

export interface RunnerEntry {
  name: string;
  transport: 'rest' | 'amqp';
  /**
   * REST: the base URL without credentials, query or trailing slash, e.g. http://127.0.0.1:8913 or .../managers/hpc.
   * AMQP: the broker URL as amqplib takes it, with its credentials (never logged; `brokerLabel` is what is shown).
   */
  baseUrl: string;
  /** AMQP: the broker as logs and service-info may show it (no credentials). */
  brokerLabel?: string;
  /**
   * AMQP: 'direct' when the runner is a tesp runner that stages with its own storage backends where it supports
   * every scheme of a task (REST runners say so themselves at /tesp/capabilities); 'relay' (default) otherwise.
   */
  staging?: RunnerStaging;
  /** Pulsar's manager name ('_default_' when the URL names none). */
  manager: string;
  /** The private_token, or undefined. Never logged. */
  token?: string;
  /** How the job script runs executors on that runner (a tesp runner says so itself). */
  runtime: RunnerRuntime;
}

export function parseRunnerEntries(entries: readonly string[]): RunnerEntry[] {
  return settingEntries(KEY, entries, 'name').map(([name, value]) => {
    if (!NAME.test(name)) throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: "${name}" is not a runner name (letters, digits, _ . -)`);
    const fail = (why: string): never => {
      throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: the entry for "${name}" ${why}`);
    };
    let url: URL;
    try {
      url = new URL(value.trim());
    } catch {
      return fail('is not name=URL');
    }
    if (url.protocol === 'amqp:' || url.protocol === 'amqps:') return amqpEntry(name, url, fail);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return fail(`has the scheme "${url.protocol.replace(/:$/, '')}"; use http(s)://[TOKEN@]host:port[/managers/MANAGER] or amqp://user:password@host:port/vhost?manager=MANAGER`);
    }
    if (url.password) fail('has user:password in its URL; give the Pulsar private_token alone, as http://TOKEN@host:port/');
    const token = url.username ? decodeURIComponent(url.username) : undefined;
    const pathname = url.pathname.replace(/\/+$/, '');
    const managerMatch = /^\/managers\/([^/]+)$/.exec(pathname);
    if (pathname !== '' && !managerMatch) fail(`has the path "${pathname}"; only /managers/MANAGER may follow host:port`);
    const manager = managerMatch ? decodeURIComponent(managerMatch[1]) : '_default_';
    let runtime: RunnerRuntime = 'docker';
    for (const [param, paramValue] of url.searchParams) {
      if (param !== 'runtime') fail(`has the unknown parameter "${param}" (known: runtime)`);
      if (!(RUNNER_RUNTIMES as readonly string[]).includes(paramValue)) fail(`has runtime "${paramValue}"; use one of ${RUNNER_RUNTIMES.join(', ')}`);
      runtime = paramValue as RunnerRuntime;
    }
    return { name, transport: 'rest' as const, baseUrl: `${url.protocol}//${url.host}${pathname}`, manager, token, runtime };
  });
}

/** Pulsar's manager names become queue names: plain words. */
const MANAGER = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

function amqpEntry(name: string, url: URL, fail: (why: string) => never): RunnerEntry {
  let manager = '_default_';
  let runtime: RunnerRuntime = 'docker';
  let staging: RunnerStaging = 'relay';
  const passOn = new URLSearchParams();
  for (const [param, value] of url.searchParams) {
    if (param === 'manager') {
      if (!MANAGER.test(value)) fail(`has manager "${value.slice(0, 64)}"; use letters, digits, _ . -`);
      manager = value;
    } else if (param === 'runtime') {
      if (!(RUNNER_RUNTIMES as readonly string[]).includes(value)) fail(`has runtime "${value}"; use one of ${RUNNER_RUNTIMES.join(', ')}`);
      runtime = value as RunnerRuntime;
    } else if (param === 'staging') {
      if (!(RUNNER_STAGING as readonly string[]).includes(value)) fail(`has staging "${value}"; use one of ${RUNNER_STAGING.join(', ')}`);
      staging = value as RunnerStaging;
    } else if (['heartbeat', 'frameMax', 'channelMax', 'locale'].includes(param)) {
      passOn.set(param, value); // amqplib's own connection parameters
    } else {
      fail(`has the unknown parameter "${param}" (known: manager, runtime, staging, heartbeat, frameMax, channelMax, locale)`);
    }
  }
  const vhost = url.pathname === '' ? '/' : url.pathname;
  const query = passOn.toString();
  const brokerUrl = `${url.protocol}//${url.username || url.password ? `${url.username}:${url.password}@` : ''}${url.host}${vhost}${query ? `?${query}` : ''}`;
  const brokerLabel = `${url.protocol}//${url.host}${vhost}`;
  return { name, transport: 'amqp', baseUrl: brokerUrl, brokerLabel, manager, runtime, staging };
}
