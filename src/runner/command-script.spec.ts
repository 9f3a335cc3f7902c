import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { envStatement, EnvError, renderCommandScript } from './command-script';

describe('command.sh', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-command-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const run = (env: unknown[], commandLine: string) => {
    const script = path.join(dir, 'command.sh');
    rmSync(path.join(dir, 'return_code'), { force: true });
    writeFileSync(script, renderCommandScript({ workingDir: dir, returnCodeFile: path.join(dir, 'return_code'), env, commandLine }));
    let stdout = '';
    try {
      stdout = execFileSync('/bin/bash', [script], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: '/home/server' } });
    } catch (err) {
      stdout = (err as { stdout: string }).stdout;
    }
    return { stdout, returnCode: readFileSync(path.join(dir, 'return_code'), 'utf8') };
  };

  it('delivers env values exactly as sent, unlike Pulsar, which lets $, ` and \\ expand', () => {
    const value = 'a "b" $HOME `id` \\ \'q\' $(echo x)\nline2';
    expect(run([{ name: 'FOO', value }], 'printf %s "$FOO"').stdout).toBe(value);
  });

  it('keeps raw values as shell text, sources files and runs execute lines verbatim', () => {
    writeFileSync(path.join(dir, 'vars.sh'), 'FROM_FILE=yes\n');
    const out = run([{ name: 'RAW', value: '$HOME', raw: true }, { file: path.join(dir, 'vars.sh') }, { execute: 'EXEC=ran' }], 'echo "$RAW $FROM_FILE $EXEC"');
    expect(out.stdout).toBe('/home/server yes ran\n');
  });

  it('records the exit code, also when the command line calls exit', () => {
    expect(run([], 'false').returnCode).toBe('1\n');
    expect(run([], 'echo hi; exit 3').returnCode).toBe('3\n');
    expect(run([], 'cd "$(mktemp -d)"; true').returnCode).toBe('0\n');
  });

  it('refuses names that are not shell variables', () => {
    for (const item of [{ name: 'A;B', value: 'x' }, { name: '1A', value: 'x' }, { value: 'x' }, 'FOO=bar', null]) {
      expect(() => envStatement(item)).toThrow(EnvError);
    }
  });
});
