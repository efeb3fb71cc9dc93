// Finding the line that sets an environment variable in a shell's startup files, so `doctor` can
// say "ANTHROPIC_API_KEY is exported at ~/.zshrc:12" instead of "something sets it". Only the file
// and line number are reported: the line itself usually holds the key.
import fs from 'node:fs/promises';
import path from 'node:path';
import { readCheckedFile } from '../checked-file.js';

export interface SettingLine {
  file: string;
  line: number;
}

const MAX_FILE_BYTES = 1024 * 1024;

/** The startup files of sh, bash, zsh and fish, and systemd's environment.d, for this home. */
export async function startupFiles(home: string, env: NodeJS.ProcessEnv): Promise<string[]> {
  const zdot = env.ZDOTDIR && path.isAbsolute(env.ZDOTDIR) ? env.ZDOTDIR : home;
  const files = [
    ...['.profile', '.bash_profile', '.bash_login', '.bashrc'].map((f) => path.join(home, f)),
    ...['.zshenv', '.zprofile', '.zshrc', '.zlogin'].map((f) => path.join(zdot, f)),
    path.join(home, '.config', 'fish', 'config.fish'),
  ];
  for (const dir of [path.join(home, '.config', 'fish', 'conf.d'), path.join(home, '.config', 'environment.d')]) {
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    files.push(
      ...names
        .filter((n) => n.endsWith('.fish') || n.endsWith('.conf'))
        .sort()
        .map((n) => path.join(dir, n)),
    );
  }
  return [...new Set(files)];
}

function patternsFor(name: string): RegExp[] {
  return [
    // sh/bash/zsh: NAME=…, export NAME=…, declare -x / typeset -x NAME=…; environment.d: NAME=…
    new RegExp(`^\\s*(?:export\\s+|(?:declare|typeset)\\s+-[a-zA-Z]*x[a-zA-Z]*\\s+)?${name}=`),
    // fish: set -gx NAME …
    new RegExp(`^\\s*set\\s+(?:-[a-zA-Z]+\\s+|--[a-z-]+\\s+)*${name}(?:\\s|$)`),
    // csh/tcsh
    new RegExp(`^\\s*setenv\\s+${name}(?:\\s|$)`),
  ];
}

/** Every line in the startup files that sets one of `names`, by name. */
export async function findSettingLines(
  names: readonly string[],
  home: string,
  env: NodeJS.ProcessEnv,
): Promise<Map<string, SettingLine[]>> {
  const found = new Map<string, SettingLine[]>(names.map((n) => [n, []]));
  const patterns = names.map((n) => [n, patternsFor(n)] as const);
  for (const file of await startupFiles(home, env)) {
    let text: string;
    try {
      text = (
        await readCheckedFile(file, { label: file, maxBytes: MAX_FILE_BYTES, invalid: 'INVALID_VALUE', trust: 'any' })
      ).toString('utf8');
    } catch {
      continue;
    }
    const lines = text.split('\n');
    lines.forEach((line, i) => {
      if (/^\s*#/.test(line)) return;
      for (const [name, res] of patterns) {
        if (res.some((re) => re.test(line))) found.get(name)!.push({ file, line: i + 1 });
      }
    });
  }
  return found;
}
