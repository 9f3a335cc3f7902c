import { DomainError, ErrorCode } from '../domain/domain-error';
import { settingEntries } from './setting-entries';

// compute.pulsar.runners: "name=URL" entries, the URL's scheme picking the transport. REST:
// http(s)://[TOKEN@]host:port[/managers/MANAGER][?runtime=docker|apptainer|process]. The token travels as Pulsar's
// `private_token` query parameter (as Galaxy turns the userinfo into it). Messages name the entry, never the token.

const KEY = 'compute.pulsar.runners';
/** Runner names appear in backend_parameters and service-info: plain words. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const RUNNER_RUNTIMES = ['docker', 'apptainer', 'process'] as const;
export type RunnerRuntime = (typeof RUNNER_RUNTIMES)[number];

export interface RunnerEntry {
  name: string;
  transport: 'rest';
  /** Base URL without credentials, query or trailing slash, e.g. http://127.0.0.1:8913 or .../managers/hpc. */
  baseUrl: string;
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
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return fail(`has the scheme "${url.protocol.replace(/:$/, '')}"; use http(s)://[TOKEN@]host:port[/managers/MANAGER]`);
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
