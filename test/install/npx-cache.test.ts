// keybroker run by npx lives in npm's cache (~/.npm/_npx/<hash>/node_modules/keybroker), which npm
// may clean at any time: `setup claude`, `setup codex` and `service install` refuse to write a path into it
// (NOT_INSTALLED, one line that says to install), and the same copy elsewhere does the job.
// The real npx is driven in package.test.ts; here a copy of the package stands where npx puts it.
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/messages.js';
import { privateTempDir, run } from '../helpers/daemon.js';
import { copyPackage } from '../helpers/package-copy.js';

let home: string;
beforeEach(() => {
  home = privateTempDir('kb-npx-');
  fs.mkdirSync(path.join(home, '.config', 'keybroker'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(
    path.join(home, '.config', 'keybroker', 'config.yaml'),
    'profiles:\n  default:\n    source: env:KB_NPX_KEY\n',
    {
      mode: 0o600,
    },
  );
});

const settings = (): string => path.join(home, '.claude', 'settings.json');

function keybroker(root: string, args: string[]): ReturnType<typeof run> {
  const env = { HOME: home, PATH: process.env.PATH, XDG_CONFIG_HOME: path.join(home, '.config') };
  return run(process.execPath, [path.join(root, 'dist', 'src', 'cli', 'main.js'), ...args], {
    env,
    cwd: home,
    timeoutMs: 30_000,
  });
}

describe('keybroker in npx’s cache', () => {
  let root: string;
  beforeEach(() => {
    root = path.join(home, '.npm', '_npx', '0b37d66833efb4e7', 'node_modules', 'keybroker');
    copyPackage(root);
  });

  it('setup claude refuses with NOT_INSTALLED in one line, and writes nothing', async () => {
    const r = await keybroker(root, ['setup', 'claude']);
    expect(r.code).toBe(ERROR_CODES.NOT_INSTALLED);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('npm install -g keybroker');
    expect(fs.existsSync(settings())).toBe(false);
  });

  it('setup codex refuses the same way, and writes nothing', async () => {
    const r = await keybroker(root, ['setup', 'codex', '--provider', 'mine']);
    expect(r.code).toBe(ERROR_CODES.NOT_INSTALLED);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(path.join(home, '.codex'))).toBe(false);
  });

  it('service install refuses the same way; its --dry-run and the rest of keybroker work', async () => {
    expect((await keybroker(root, ['service', 'install'])).code).toBe(ERROR_CODES.NOT_INSTALLED);
    expect((await keybroker(root, ['service', 'install', '--dry-run'])).code).toBe(0);
    expect((await keybroker(root, ['config', 'check'])).code).toBe(0);
  });
});

it('the same copy installed elsewhere sets Claude Code up', async () => {
  const root = path.join(home, '.local', 'lib', 'node_modules', 'keybroker');
  copyPackage(root);
  const r = await keybroker(root, ['setup', 'claude']);
  expect(r.code).toBe(0);
  const helper = (JSON.parse(fs.readFileSync(settings(), 'utf8')) as { apiKeyHelper: string }).apiKeyHelper;
  expect(helper.startsWith(path.join(root, 'dist'))).toBe(true);
});
