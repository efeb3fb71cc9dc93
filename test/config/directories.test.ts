// The directories: map: the choosing rule, and what the config loader refuses.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { adapterFor } from '../../adapters/registry.js';
import { AdapterPool } from '../../src/adapter-pool.js';
import { chooseProfile, DirectoryChooser, isWithin, type DirectoryRule } from '../../src/config/directories.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { CLI, privateTempDir, run } from '../helpers/daemon.js';

const dir = privateTempDir('kb-dirs-');
const pool = new AdapterPool({ find: adapterFor, env: { HOME: dir }, log: createLogger({ level: 'silent' }) });
afterAll(() => pool.closeAll());

const rules: DirectoryRule[] = [
  { dir: '~/a/b', path: '/h/a/b', profile: 'ab' },
  { dir: '~/a/b/c/d', path: '/h/a/b/c/d', profile: 'abcd' },
  { dir: '/', path: '/', profile: 'root' },
];

describe('choosing a profile', () => {
  it.each([
    ['/h/a/b', 'ab'],
    ['/h/a/b/c', 'ab'],
    ['/h/a/b/c/d', 'abcd'],
    ['/h/a/b/c/d/e', 'abcd'],
    ['/h/a/bc', 'root'],
    ['/h/a/b/c/de', 'ab'],
    ['/elsewhere', 'root'],
  ])('%s → %s (longest match on whole path segments)', (cwd, profile) => {
    expect(chooseProfile(rules, undefined, cwd)).toMatchObject({ profile, chosenBy: 'directory' });
  });

  it('an explicit profile wins; no match means default', () => {
    expect(chooseProfile(rules, 'named', '/h/a/b')).toEqual({ profile: 'named', chosenBy: 'argument' });
    expect(chooseProfile(rules.slice(0, 2), undefined, '/h/x')).toEqual({ profile: 'default', chosenBy: 'default' });
    expect(chooseProfile(rules, undefined, undefined)).toEqual({ profile: 'default', chosenBy: 'default' });
  });

  it('isWithin compares whole segments', () => {
    expect(isWithin('/a/b', '/a/b')).toBe(true);
    expect(isWithin('/a/b/c', '/a/b')).toBe(true);
    expect(isWithin('/a/bc', '/a/b')).toBe(false);
    expect(isWithin('/a', '/')).toBe(true);
  });

  it('the daemon chooser resolves the working directory through symlinks', async () => {
    fs.mkdirSync(path.join(dir, 'proj', 'sub'), { recursive: true });
    fs.symlinkSync(path.join(dir, 'proj'), path.join(dir, 'proj-link'));
    const chooser = new DirectoryChooser();
    chooser.setRules([{ dir: '~/proj', path: fs.realpathSync(path.join(dir, 'proj')), profile: 'p' }]);
    expect(await chooser.choose(undefined, path.join(dir, 'proj-link', 'sub'))).toMatchObject({
      profile: 'p',
      chosenBy: 'directory',
    });
    expect(await chooser.choose(undefined, path.join(dir, 'no-such'))).toMatchObject({ profile: 'default' });
  });
});

describe('loading directories:', () => {
  const write = (text: string): string => {
    const file = path.join(dir, 'c.yaml');
    fs.writeFileSync(file, text, { mode: 0o600 });
    return file;
  };

  it('resolves ~/ and symlinks at load', async () => {
    fs.mkdirSync(path.join(dir, 'real'), { recursive: true });
    fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'link'));
    const loaded = await loadConfig(
      write('directories:\n  ~/link: a\nprofiles:\n  a:\n    source: env:X\n'),
      pool.acquire,
      dir,
    );
    expect(loaded.directories).toEqual([
      { dir: '~/link', path: fs.realpathSync(path.join(dir, 'real')), profile: 'a' },
    ]);
    expect(loaded.audit).toBe(true);
  });

  it('reports a directory mapped to a missing profile, and a relative directory, each at its path', async () => {
    const file = write('directories:\n  ~/x: nope\n  rel/dir: a\nprofiles:\n  a:\n    source: env:X\n');
    const err = await loadConfig(file, pool.acquire, dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => [p.path, p.line])).toEqual([
      ['directories.~/x', 2],
      ['directories.rel/dir', 3],
    ]);
  });

  it('keybroker config check exits 8 on a directory mapped to a profile that does not exist', async () => {
    const file = write('directories:\n  ~/code/acme: wrok\nprofiles:\n  work:\n    source: env:X\n');
    const result = await run(process.execPath, [CLI, 'config', 'check', '--config', file], {
      env: { ...process.env, HOME: dir },
    });
    expect(result.code).toBe(8);
    expect(result.stderr).toContain(`${file}:2: directories.~/code/acme:`);
  });

  it('audit: false turns the trail off; anything else but a boolean is a problem', async () => {
    expect(
      (await loadConfig(write('audit: false\nprofiles:\n  a:\n    source: env:X\n'), pool.acquire, dir)).audit,
    ).toBe(false);
    const err = await loadConfig(write('audit: "no"\nprofiles:\n  a:\n    source: env:X\n'), pool.acquire, dir).catch(
      (e: unknown) => e,
    );
    expect((err as ConfigError).problems.map((p) => p.path)).toEqual(['audit']);
  });
});
