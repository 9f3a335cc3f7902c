// command.sh, the script a job runs (as Pulsar's queued_python manager writes it, pulsar-protocol reference §8):
// the submit's env statements, cd into working/, the command line, and its exit code into <job>/return_code, a
// file, so the code survives a restart of the runner.

/** One item of the submit's `env` list. */
export type EnvItem = { name: string; value?: unknown; raw?: boolean } | { file: string; raw?: boolean } | { execute: string };

export class EnvError extends Error {}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A shell word that expands to exactly `value`: single quotes, each ' written as '\''. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * The statement for one env item. Stricter than Pulsar, which only escapes `"` (so `$HOME` in a value expands):
 * values are single-quoted and arrive exactly as sent; `raw: true` keeps Pulsar's meaning, the value as shell text.
 */
export function envStatement(item: unknown): string {
  if (typeof item !== 'object' || item === null) throw new EnvError('each env item must be an object');
  const entry = item as Record<string, unknown>;
  if (typeof entry.execute === 'string') return entry.execute;
  if (typeof entry.file === 'string') return `. ${shellQuote(entry.file)}`;
  if (typeof entry.name !== 'string' || !NAME.test(entry.name)) throw new EnvError(`env item name ${JSON.stringify(entry.name)} is not a shell variable name`);
  const value = entry.value === undefined || entry.value === null ? '' : String(entry.value);
  return `${entry.name}=${entry.raw === true ? value : shellQuote(value)}; export ${entry.name}`;
}

export interface CommandScript {
  workingDir: string;
  returnCodeFile: string;
  env: readonly unknown[];
  commandLine: string;
}

export function renderCommandScript(script: CommandScript): string {
  const returnCode = shellQuote(script.returnCodeFile);
  return [
    '#!/bin/bash',
    '# Written by tesp runner.',
    `_tesp_return_code_file=${returnCode}`,
    // A command line that calls `exit` skips the last line; the EXIT trap still records its code.
    `trap '_tesp_rc=$?; [ -s "$_tesp_return_code_file" ] || echo "$_tesp_rc" > "$_tesp_return_code_file"' EXIT`,
    ...script.env.map(envStatement),
    `cd ${shellQuote(script.workingDir)} || exit 1`,
    script.commandLine,
    `echo $? > ${returnCode}`,
    '',
  ].join('\n');
}
