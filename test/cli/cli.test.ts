// The keybroker CLI against a real daemon: status, refresh, get, config check, and what it says
// when there is no daemon.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.js';
import { baseEnv, CLI, privateTempDir, ROOT, run, startDaemon, type DaemonHandle } from '../helpers/daemon.js';

let d: DaemonHandle;
const KEY = 'sk-cli-0b9a8c';

beforeAll(async () => {
  d = await startDaemon({
    config: `profiles:\n  default:\n    source: env:KB_CLI_KEY\n  broken:\n    source: 'exec:echo "vault: permission denied" >&2; exit 2'\n  idle:\n    source: env:KB_CLI_KEY\n`,
    env: { KB_CLI_KEY: KEY },
  });
});
afterAll(async () => {
  await d.stop();
  fs.rmSync(d.dir, { recursive: true, force: true });
});

describe('keybroker status', () => {
  it('shows each profile as a table row, never a value', async () => {
    await d.cli(['get']);
    await d.cli(['get']);
    await d.cli(['get', 'broken']);
    const r = await d.cli(['status']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(KEY);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^daemon   pid ${d.proc.pid}, keybroker ${VERSION}, up `));
    expect(lines).toContain(`socket   ${d.socket}`);
    const header = lines.find((l) => l.startsWith('PROFILE'))!;
    expect(header.split(/\s{2,}/)).toEqual(['PROFILE', 'SOURCE', 'STATE', 'AGE', 'EXPIRES IN', 'HITS/MISSES', 'CONSUMERS', 'LAST ERROR']);
    const row = (name: string) => lines.find((l) => l.startsWith(`${name} `))!.split(/\s{2,}/);
    expect(row('default')).toEqual(expect.arrayContaining(['default', 'env:KB_CLI_KEY', 'fresh', '1/1', '-']));
    expect(row('broken')).toEqual(expect.arrayContaining(['broken', 'exec:echo …', 'error', '0/1', 'SOURCE_ERROR: exec:echo … exited 2: vault: permission denied']));
    expect(row('idle')).toEqual(['idle', 'env:KB_CLI_KEY', 'cold', '-', '-', '0/0', '0', '-']);
  });

  it('--json prints the protocol reply', async () => {
    const status = JSON.parse((await d.cli(['status', '--json'])).stdout) as { ok: boolean; profiles: Array<{ name: string; state: string }> };
    expect(status.ok).toBe(true);
    expect(status.profiles.map((p) => p.name)).toEqual(['default', 'broken', 'idle']);
  });
});

describe('keybroker refresh and get', () => {
  it('refreshes one profile, or all, reporting failures with their exit status', async () => {
    expect(await d.cli(['refresh', 'default'])).toMatchObject({ code: 0, stdout: 'refreshed default\n' });
    const all = await d.cli(['refresh', '--all']);
    expect(all.code).toBe(5);
    expect(all.stdout).toBe('refreshed default\nrefreshed idle\n');
    expect(all.stderr).toBe('keybroker: broken: exec:echo … exited 2: vault: permission denied\n');
  });

  it('needs a profile or --all', async () => {
    const r = await d.cli(['refresh']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('name a profile or pass --all');
  });

  it('get prints the value; an unknown profile is exit 4', async () => {
    expect(await d.cli(['get'])).toMatchObject({ code: 0, stdout: `${KEY}\n` });
    expect((await d.cli(['get', 'nope'])).code).toBe(4);
  });
});

describe('without a daemon', () => {
  it('says so and how to start one, with exit 3', async () => {
    const dir = privateTempDir('kb-cli-');
    try {
      const r = await run(process.execPath, [CLI, 'status'], { env: baseEnv(dir) });
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/^keybroker: keybroker daemon not reachable on .* \(no socket there\) — start it with: keybroker daemon/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('keybroker config check', () => {
  it('lists the profiles of a good config', async () => {
    const r = await d.cli(['config', 'check']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${d.configPath}: ok, 3 profiles`);
    expect(r.stdout).toContain('  default: env: source, ttl 15m, maxStale 1h, timeout 8s');
  });

  it('prints every problem of a bad one and exits 8', async () => {
    const bad = path.join(d.dir, 'bad.yaml');
    fs.writeFileSync(bad, 'profiles:\n  a:\n    source: env:A\n    ttl: 5x\n  b:\n    source: zz:top\n', { mode: 0o600 });
    const r = await d.cli(['config', 'check', '--config', bad]);
    expect(r.code).toBe(8);
    expect(r.stderr).toBe(
      [
        `${bad}:4: profiles.a.ttl: "5x" is not a duration: use a number of seconds, or 30s, 5m, 1h, 1d`,
        `keybroker: 1 problem in ${bad}`,
        '',
      ].join('\n'),
    );
    fs.writeFileSync(bad, 'profiles:\n  b:\n    source: zz:top\n', { mode: 0o600 });
    expect((await d.cli(['config', 'check', '--config', bad])).stderr).toContain(`${bad}:3: profiles.b.source: unknown source kind "zz:"`);
  });
});

describe('help and version', () => {
  it('--help teaches the commands with examples', async () => {
    const r = await run(process.execPath, [CLI, '--help']);
    expect(r.code).toBe(0);
    for (const word of ['daemon', 'get', 'refresh', 'status', 'config', 'Quick start']) expect(r.stdout).toContain(word);
    const daemonHelp = await run(process.execPath, [CLI, 'daemon', '--help']);
    expect(daemonHelp.stdout).toContain('SIGHUP reloads the config');
  });

  it('reports the version of package.json', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(VERSION).toBe(pkg.version);
    expect((await run(process.execPath, [CLI, '--version'])).stdout).toBe(`${pkg.version}\n`);
  });

  it('an unknown command is a usage error (exit 2)', async () => {
    const r = await run(process.execPath, [CLI, 'frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
  });
});
