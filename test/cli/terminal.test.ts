// Terminal conventions, on a real pseudo-terminal (util-linux `script`) and into a pipe: colour for
// verdicts only where a person looks at them, NO_COLOR / FORCE_COLOR / --no-color, and doctor's
// progress (each check as it finishes, the slow source named while it waits).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { wantsColour } from '../../src/cli/colour.js';
import { CLI, sharedDaemon } from '../helpers/daemon.js';

const SCRIPT = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p));
/** An SGR escape (a colour or a weight), not the line-clearing ones a progress line uses. */
// eslint-disable-next-line no-control-regex -- the escape is what is looked for
const SGR = /\x1b\[[0-9;]*m/;
const GREEN_OK = '\x1b[32mok';
const RED_FAIL = '\x1b[31mfail';

const d = sharedDaemon({
  config: [
    'profiles:',
    '  default:',
    '    source: env:KB_TERM_KEY',
    '  slow:',
    "    source: 'exec:sleep 1.8; echo sk-term-slow-51'",
    '  broken:',
    '    source: env:KB_TERM_UNSET',
    '',
  ].join('\n'),
  env: { KB_TERM_KEY: 'sk-term-4d2e' },
});

/** Run the CLI on a pseudo-terminal: everything it wrote to the terminal, and its exit status. */
function onTerminal(args: string[], extra: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string }> {
  const command = ['exec', process.execPath, CLI, ...args].join(' ');
  const proc = spawn(SCRIPT!, ['-qec', command, '/dev/null'], {
    env: { ...d.env, SHELL: '/bin/sh', TERM: 'xterm', ...extra },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stdin.end();
  return new Promise((resolve) => proc.on('close', (code) => resolve({ code, out })));
}

describe('when to colour', () => {
  it('a terminal gets colour; a pipe, TERM=dumb, NO_COLOR and --no-color do not; FORCE_COLOR forces it', () => {
    const tty = { isTTY: true };
    const pipe = { isTTY: false };
    expect(wantsColour(tty, {}, false)).toBe(true);
    expect(wantsColour(pipe, {}, false)).toBe(false);
    expect(wantsColour(tty, { TERM: 'dumb' }, false)).toBe(false);
    expect(wantsColour(tty, { NO_COLOR: '1' }, false)).toBe(false);
    // An empty NO_COLOR is not set (no-color.org).
    expect(wantsColour(tty, { NO_COLOR: '' }, false)).toBe(true);
    expect(wantsColour(tty, {}, true)).toBe(false);
    expect(wantsColour(pipe, { FORCE_COLOR: '1' }, false)).toBe(true);
    expect(wantsColour(tty, { FORCE_COLOR: '0' }, false)).toBe(false);
    // NO_COLOR and --no-color win over FORCE_COLOR.
    expect(wantsColour(pipe, { FORCE_COLOR: '1', NO_COLOR: '1' }, false)).toBe(false);
    expect(wantsColour(pipe, { FORCE_COLOR: '1' }, true)).toBe(false);
  });
});

describe.skipIf(!SCRIPT)('on a terminal', () => {
  it('doctor: verdicts in colour, each check printed as it finishes, and the slow source named while it waits', async () => {
    const r = await onTerminal(['doctor']);
    expect(r.code).toBe(1); // profile:broken fails
    expect(r.out).toContain(GREEN_OK);
    expect(r.out).toContain(RED_FAIL);
    const waiting = r.out.search(/waiting for source exec:[^\n]*\(profile "slow"\)/);
    expect(waiting).toBeGreaterThan(0);
    // Checks made before the slow source were on the terminal while it was awaited.
    expect(r.out.indexOf('credential')).toBeLessThan(waiting);
    expect(r.out.indexOf('profile:default')).toBeLessThan(waiting);
    expect(r.out.indexOf('profile:slow')).toBeGreaterThan(waiting);
  });

  it('status: the state of each profile in its verdict colour', async () => {
    await d.request({ v: 1, op: 'get', profile: 'default' });
    await d.request({ v: 1, op: 'get', profile: 'broken' });
    const r = await onTerminal(['status']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('\x1b[32mfresh\x1b[39m');
    expect(r.out).toContain('\x1b[31merror\x1b[39m');
  });

  it('NO_COLOR and --no-color turn colour off on a terminal', async () => {
    for (const [args, extra] of [
      [['--no-color', 'doctor', '--no-fetch'], {}],
      [['doctor', '--no-fetch', '--no-color'], {}],
      [['doctor', '--no-fetch'], { NO_COLOR: '1' }],
      [['status', '--no-color'], {}],
    ] as const) {
      const r = await onTerminal([...args], extra);
      expect(r.out).toMatch(/^(ok +daemon|daemon +pid) /m);
      expect(r.out).not.toMatch(SGR);
    }
  });
});

describe('into a pipe', () => {
  it('doctor prints the checks and nothing else: no colour, no progress', async () => {
    const r = await d.cli(['doctor']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^fail +profile:broken/m);
    expect(r.stdout + r.stderr).not.toMatch(SGR);
    expect(r.stdout + r.stderr).not.toContain('waiting for');
  });

  it('FORCE_COLOR=1 colours it anyway', async () => {
    const r = await d.cli(['doctor', '--no-fetch'], { FORCE_COLOR: '1' });
    expect(r.stdout).toContain(GREEN_OK);
  });
});
