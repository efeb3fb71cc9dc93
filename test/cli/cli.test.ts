// The keybroker CLI against a real daemon: status, refresh, get, config check, and what it says
// when there is no daemon.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_DEFAULT } from '../../src/cli/help-text.js';
import { VERSION } from '../../src/version.js';
import { baseEnv, CLI, privateTempDir, ROOT, run, sharedDaemon, type RunResult } from '../helpers/daemon.js';

const KEY = 'sk-cli-0b9a8c';

const d = sharedDaemon({
  config: `profiles:\n  default:\n    source: env:KB_CLI_KEY\n  broken:\n    source: 'exec:echo "vault: permission denied" >&2; exit 2'\n  idle:\n    source: env:KB_CLI_KEY\n`,
  env: { KB_CLI_KEY: KEY },
});

describe('keybroker status', () => {
  it('shows each profile as a table row, never a value', async () => {
    // The gets only make the rows to show: asked over the socket, without a CLI process each.
    for (const profile of ['default', 'default', 'broken']) await d.request({ v: 1, op: 'get', profile });
    const r = await d.cli(['status']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(KEY);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^daemon   pid ${d.proc.pid}, keybroker ${VERSION}, up `));
    expect(lines).toContain(`socket   ${d.socket}`);
    const header = lines.find((l) => l.startsWith('PROFILE'))!;
    expect(header.split(/\s{2,}/)).toEqual([
      'PROFILE',
      'SOURCE',
      'STATE',
      'AGE',
      'FRESH FOR',
      'EXPIRES IN',
      'HITS/MISSES',
      'CONSUMERS',
      'LAST ERROR',
    ]);
    const row = (name: string) => lines.find((l) => l.startsWith(`${name} `))!.split(/\s{2,}/);
    expect(row('default')).toEqual(expect.arrayContaining(['default', 'env:KB_CLI_KEY', 'fresh', '1/1', '-']));
    expect(row('broken')).toEqual(
      expect.arrayContaining([
        'broken',
        'exec:echo …',
        'error',
        '0/1',
        'SOURCE_ERROR: exec:echo … exited 2: vault: permission denied',
      ]),
    );
    expect(row('idle')).toEqual(['idle', 'env:KB_CLI_KEY', 'cold', '-', '-', '-', '0/0', '0', '-']);
  });

  it('--json prints the protocol reply', async () => {
    const status = JSON.parse((await d.cli(['status', '--json'])).stdout) as {
      ok: boolean;
      profiles: Array<{ name: string; state: string }>;
    };
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
    // One line per failure, naming the profile and its source kind.
    expect(all.stderr).toMatch(/^keybroker: broken: exec:[^\n]*\n$/);
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
  // The step each situation calls for: autostart on or off, the service installed or not.
  it.each([
    [
      'autostart off, no service',
      { KEYBROKER_NO_AUTOSTART: '1' },
      false,
      'run keybroker daemon in a terminal of its own',
    ],
    ['autostart on, no service', { KEYBROKER_NO_AUTOSTART: '' }, false, 'start one now with: keybroker restart'],
    ['the service installed', { KEYBROKER_NO_AUTOSTART: '' }, true, 'check it with: keybroker service status'],
  ] as const)('%s: exit 3, and the step that applies', async (_what, extra, service, step) => {
    const dir = privateTempDir('kb-cli-');
    if (service) {
      const units = path.join(dir, '.config', 'systemd', 'user');
      fs.mkdirSync(units, { recursive: true });
      for (const f of ['keybroker.service', 'keybroker.socket']) fs.writeFileSync(path.join(units, f), '');
    }
    const r = await run(process.execPath, [CLI, 'status'], { env: baseEnv(dir, extra) });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^keybroker: keybroker daemon not reachable on .* \(no socket there\) — /);
    expect(r.stderr).toContain(step);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('keybroker config check', () => {
  it('lists the profiles of a good config', async () => {
    const r = await d.cli(['config', 'check']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${d.configPath}: ok, 3 profiles`);
    expect(r.stdout).toContain('  default: env: source, ttl 15m, maxStale 1h, timeout 8s');
  });

  it('prints every problem of a bad one in one run, one line each, and exits 8', async () => {
    const bad = path.join(d.dir, 'bad.yaml');
    fs.writeFileSync(bad, 'profiles:\n  a:\n    source: env:A\n    ttl: 5x\n  b:\n    source: zz:top\n', {
      mode: 0o600,
    });
    const r = await d.cli(['config', 'check', '--config', bad]);
    expect(r.code).toBe(8);
    const lines = r.stderr.split('\n').filter(Boolean);
    // The bad duration and the unknown source kind together: no second run needed.
    expect(lines.slice(0, -1).map((l) => l.slice(0, l.indexOf(': ', bad.length)))).toEqual([`${bad}:4`, `${bad}:6`]);
    expect(lines.at(-1)).toMatch(/^keybroker: 2 problems in /);
  });

  it("warns about a timeout long enough for Claude Code's slow-helper notice, and still exits 0", async () => {
    const slow = path.join(d.dir, 'slow.yaml');
    fs.writeFileSync(slow, 'profiles:\n  a:\n    source: env:A\n    timeout: 15s\n', { mode: 0o600 });
    const r = await d.cli(['config', 'check', '--config', slow]);
    expect(r.code).toBe(0);
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      expect.stringMatching(new RegExp(`^${slow}:4: warning: profiles\\.a\\.timeout: `)),
    ]);
  });
});

describe('help and version', () => {
  // Each help text is printed once for the tests that read it (the same command prints the same text).
  const helpRuns = new Map<string, Promise<RunResult>>();
  const help = (...command: string[]): Promise<RunResult> => {
    const key = command.join(' ');
    if (!helpRuns.has(key)) helpRuns.set(key, run(process.execPath, [CLI, ...command, '--help']));
    return helpRuns.get(key)!;
  };

  it('--help teaches the commands with examples', async () => {
    const r = await help();
    expect(r.code).toBe(0);
    for (const word of ['daemon', 'get', 'refresh', 'status', 'config', 'Quick start'])
      expect(r.stdout).toContain(word);
    const daemonHelp = await help('daemon');
    expect(daemonHelp.stdout).toContain('SIGHUP reloads the config');
  });

  it("--help's quick start tells the README's story of starting the daemon: autostart, else the service", async () => {
    const r = await help();
    const [quickStart, rest] = r.stdout.split('\nThe daemon:');
    // The quick start never has you run the daemon; the section after it says who does.
    expect(quickStart).not.toMatch(/^ {2}keybroker daemon /m);
    expect(rest).toContain('keybroker-shim starts one in the background');
    for (const step of ['keybroker service install', 'keybroker daemon ', 'keybroker logs', 'keybroker stop'])
      expect(rest).toContain(step);
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain('You do not start the daemon yourself: when no daemon answers, the shim starts one');
  });

  it('reports the version of package.json, with -v or --version', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(VERSION).toBe(pkg.version);
    for (const flag of ['--version', '-v'])
      expect(await run(process.execPath, [CLI, flag])).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });

  it('every command with --config describes its default the same way', async () => {
    for (const command of [['daemon'], ['config', 'check'], ['doctor'], ['setup', 'claude']]) {
      const text = (await help(...command)).stdout.replace(/\s+/g, ' ');
      expect(text, command.join(' ')).toContain(`(default: ${CONFIG_DEFAULT})`);
    }
  });

  it('an unknown command is a usage error (exit 2)', async () => {
    const r = await run(process.execPath, [CLI, 'frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
  });
});
