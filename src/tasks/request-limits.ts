import type { Settings } from '../config/settings.schema';

// What one request may hold (settings `limits.*`), and the one wording of a request beyond a limit, so a client
// reads which setting refused it and its value: "inputs: 1001 entries, more than limits.inputs (1000)".

export type RequestLimits = Settings['limits'];
export type LimitKey = keyof RequestLimits;

export function limitProblem(amount: number, unit: string, key: LimitKey, limits: RequestLimits): string {
  return `${amount} ${unit}, more than limits.${key} (${limits[key]})`;
}
