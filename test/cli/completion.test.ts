// Shell completion as a shell runs it: the generated bash script is loaded into a real bash, its
// completion function is called for a command line, and what it offers is checked; zsh and fish
// scripts are syntax-checked where those shells are installed. Profile names come from the config
// through `keybroker __complete profiles`, with no daemon running.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { baseEnv, CLI, privateTempDir, run } from '../helpers/daemon.js';

let dir: string;
let env: NodeJS.ProcessEnv;
let bin: string;
const has = (shell: string): boolean => spawnSync('sh', ['-c', `command -v ${shell}`]).status === 0;

beforeAll(() => {
  dir = privateTempDir('kb-completion-');
  env = baseEnv(dir);
  fs.writeFileSync(
    env.KEYBROKER_CONFIG!,
    'profiles:\n  work:\n    source: env:A\n  home-2:\n    source: env:B\n  "bad name $(touch pwned)":\n    source: env:C\n',
    { mode: 0o600 },
  );
  // `keybroker` on PATH, as an installed one would be: the scripts call back into it.
  bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, 'keybroker'), `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, { mode: 0o755 });
  env.PATH = `${bin}:${env.PATH}`;
});

// Each shell's script is generated once (a CLI process) for every test that reads it: the same
// command prints the same script.
const scripts = new Map<string, Promise<string>>();
function script(shell: string): Promise<string> {
  if (!scripts.has(shell))
    scripts.set(
      shell,
      run(process.execPath, [CLI, 'completion', shell], { env }).then((r) => {
        expect(r.code).toBe(0);
        return r.stdout;
      }),
    );
  return scripts.get(shell)!;
}

/** What bash's completion offers for `line` (the word being completed is the last, maybe empty). */
async function complete(line: string): Promise<string[]> {
  const file = path.join(dir, 'keybroker.bash');
  fs.writeFileSync(file, await script('bash'));
  const words = line.split(' ');
  const driver = [
    `source ${file}`,
    `COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})`,
    `COMP_CWORD=${words.length - 1}`,
    `COMP_LINE='${line}'`,
    `COMP_POINT=${line.length}`,
    '_keybroker',
    'printf "%s\\n" "${COMPREPLY[@]}"',
  ].join('\n');
  const r = await run('bash', ['--norc', '--noprofile', '-c', driver], { env, cwd: dir });
  expect(r.stderr).toBe('');
  return r.stdout.split('\n').filter(Boolean).sort();
}

describe('keybroker completion', () => {
  it('bash: commands, subcommands and options from the command tree', async () => {
    const top = await complete('keybroker ');
    for (const c of ['status', 'doctor', 'config', 'service', 'completion']) expect(top).toContain(c);
    expect(top).not.toContain('__complete');
    expect(await complete('keybroker se')).toEqual(['service', 'setup']);
    expect(await complete('keybroker service ')).toEqual(['install', 'status', 'uninstall']);
    expect(await complete('keybroker config check --')).toEqual(
      expect.arrayContaining(['--config', '--json', '--socket', '--no-color', '--help']),
    );
    // A global option before the command and its value do not hide the command.
    expect(await complete('keybroker --socket /tmp/x.sock doctor --no-')).toEqual(['--no-color', '--no-fetch']);
  });

  it('bash: profile names from the config, without a daemon, and only valid ones', async () => {
    expect(await complete('keybroker get ')).toEqual(['home-2', 'work']);
    expect(await complete('keybroker key set w')).toEqual(['work']);
    expect(await complete('keybroker audit --profile ')).toEqual(['home-2', 'work']);
    expect(fs.existsSync(path.join(dir, 'pwned'))).toBe(false);
    expect(fs.existsSync(env.KEYBROKER_SOCKET!)).toBe(false);
  });

  it('__complete profiles prints the names, and nothing for a config it cannot read', async () => {
    expect(await run(process.execPath, [CLI, '__complete', 'profiles'], { env })).toMatchObject({
      code: 0,
      stdout: 'work\nhome-2\n',
    });
    const none = await run(process.execPath, [CLI, '__complete', 'profiles', '--config', path.join(dir, 'nope.yaml')], {
      env,
    });
    expect(none).toMatchObject({ code: 0, stdout: '' });
  });

  it('an unknown shell is a usage error', async () => {
    expect((await run(process.execPath, [CLI, 'completion', 'tcsh'], { env })).code).toBe(2);
  });

  it('every script is valid for its shell (bash always; zsh and fish where installed)', async () => {
    for (const shell of ['bash', 'zsh', 'fish']) {
      const text = await script(shell);
      expect(text).toContain(`keybroker completion ${shell}`);
      if (!has(shell)) continue;
      const file = path.join(dir, `check.${shell}`);
      fs.writeFileSync(file, text);
      const check = await run(shell, shell === 'fish' ? ['--no-execute', file] : ['-n', file], { env });
      expect(check, shell).toMatchObject({ code: 0, stderr: '' });
    }
  });
});
