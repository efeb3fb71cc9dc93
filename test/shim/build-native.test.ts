// scripts/build-native.mjs, run on a copy of what it needs (the scripts, the C sources, the built
// modules the header is generated from, node-api-headers) so it never touches this checkout's
// dist/: with and without a C compiler, as `npm run build` and as the package's install script.
// `npm ci` on a machine without cc must pass. It has two targets, the native shim and the
// daemon's hardening addon, and says one line for each.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ERROR_CODES, type noAnswerError, type renderError } from '../../src/protocol/messages.js';
import { privateTempDir, ROOT, run } from '../helpers/daemon.js';
import { recordingServer } from '../helpers/stand-in-daemon.js';
import { CLAUDE_ENV, startFakeClaude } from '../helpers/fake-claude.js';

const inDir = (dir: string): string[] => fs.readdirSync(path.join(ROOT, dir)).map((f) => `${dir}/${f}`);
const FILES = [
  'scripts/build-native.mjs',
  'scripts/native-header.mjs',
  'src/shim/keybroker-shim.c',
  ...inDir('src/shim/native'),
  'src/daemon/native/hardening.c',
  // The built modules the header is generated from (scripts/native-header.mjs), and what they import.
  ...inDir('dist/src/shim').filter((f) => f.endsWith('.js')),
  ...inDir('dist/src/client'),
  ...inDir('dist/src/protocol'),
];

let root: string;
let noCompilerPath: string;
const binary = (): string => path.join(root, 'dist', 'native', 'keybroker-shim');
const addon = (): string => path.join(root, 'dist', 'native', 'keybroker-hardening.node');
/** One line per target: the native shim and the hardening addon. */
const TARGETS = 2;

beforeEach(() => {
  root = privateTempDir('kb-build-native-');
  for (const f of FILES) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(root, f));
  }
  fs.writeFileSync(path.join(root, 'package.json'), '{"type":"module"}\n');
  // The addon's headers, a dependency of the package.
  fs.cpSync(path.join(ROOT, 'node_modules', 'node-api-headers'), path.join(root, 'node_modules', 'node-api-headers'), {
    recursive: true,
  });
  // A PATH with node and nothing else: no cc.
  noCompilerPath = path.join(root, 'bin');
  fs.mkdirSync(noCompilerPath);
  fs.symlinkSync(process.execPath, path.join(noCompilerPath, 'node'));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const build = (args: string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof run> =>
  run(process.execPath, [path.join(root, 'scripts', 'build-native.mjs'), ...args], {
    env: { ...process.env, CC: '', CFLAGS: '', ...env },
    cwd: root,
    timeoutMs: 60_000,
  });

describe('without a C compiler', () => {
  it.each([[[]], [['--install']]])('succeeds with one line and no binary (args %j)', async (args) => {
    const r = await build(args, { PATH: noCompilerPath });
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(TARGETS);
    expect(r.stdout).toContain('no C compiler');
    expect(fs.existsSync(binary())).toBe(false);
    expect(fs.existsSync(addon())).toBe(false);
  });

  it('removes a binary left from an earlier build or another machine', async () => {
    fs.mkdirSync(path.dirname(binary()), { recursive: true });
    fs.writeFileSync(binary(), 'foreign', { mode: 0o755 });
    expect((await build([], { PATH: noCompilerPath })).code).toBe(0);
    expect(fs.existsSync(binary())).toBe(false);
  });
});

// Each test runs the build (one or two C compiles, sometimes twice): past 30 s on a loaded 2-core
// machine, where a full run timed five of them out.
describe('with a C compiler', { timeout: 120_000 }, () => {
  it('builds an executable that answers (here: hands over, finds no Node shim, says so)', async () => {
    const r = await build([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'native shim: built dist/native/keybroker-shim with cc\nhardening addon: built dist/native/keybroker-hardening.node with cc\n',
    );
    expect(r.stderr).toBe(''); // no compiler warnings
    const shim = await run(binary(), ['--help'], { env: { PATH: noCompilerPath } });
    expect(shim.code).toBe(ERROR_CODES.INTERNAL);
    expect(shim.stdout).toBe('');
    expect(shim.stderr).toContain(
      `keybroker: cannot find the Node shim ${path.join(root, 'dist', 'src', 'shim', 'keybroker-shim.cjs')} beside the native keybroker-shim`,
    );
  });

  it('hands over to KEYBROKER_NODE, else the node that built it; says so when that cannot run', async () => {
    expect((await build([])).code).toBe(0);
    const nodeShim = path.join(root, 'dist', 'src', 'shim', 'keybroker-shim.cjs');
    fs.mkdirSync(path.dirname(nodeShim), { recursive: true });
    fs.writeFileSync(
      nodeShim,
      'process.stdout.write(JSON.stringify([process.execPath, ...process.argv.slice(1)]) + "\\n")\n',
    );
    const byBuildNode = await run(binary(), ['--format', 'raw', 'w'], { env: { PATH: noCompilerPath } });
    expect(JSON.parse(byBuildNode.stdout)).toEqual([
      fs.realpathSync(process.execPath),
      nodeShim,
      '--format',
      'raw',
      'w',
    ]);
    const byEnv = await run(binary(), ['--help'], {
      env: { PATH: noCompilerPath, KEYBROKER_NODE: path.join(root, 'no-node') },
    });
    expect(byEnv.code).toBe(ERROR_CODES.INTERNAL);
    expect(byEnv.stderr).toBe(
      `keybroker: cannot run the Node shim ${nodeShim} with ${path.join(root, 'no-node')} (No such file or directory); put node on PATH or set KEYBROKER_NODE to it\n`,
    );
  });

  it('renders an error as renderError does: change renderError, rebuild, and the native shim follows', async () => {
    // Other words around the profile and the fix, in the built module the header is made from.
    const messages = path.join(root, 'dist', 'src', 'protocol', 'messages.js');
    const source = fs.readFileSync(messages, 'utf8');
    const patched = source
      .replace('`profile "${profile}": ${line}`', '`[${profile}] ${line}`')
      .replace('`${line} — ${fix}`', '`${line} (to fix: ${fix})`');
    expect(patched.split('[${profile}]')).toHaveLength(2);
    expect(patched.split('(to fix: ${fix})')).toHaveLength(2);
    fs.writeFileSync(messages, patched);
    const render = ((await import(pathToFileURL(messages).href)) as { renderError: typeof renderError }).renderError;
    expect((await build([])).code).toBe(0);
    const socket = path.join(root, 'sock', 'kb.sock');
    const error = { code: 'PERMISSION_DENIED', message: 'it broke', profile: 'work', fix: 'chmod 600 x' };
    const warning = { code: 'UNAVAILABLE', message: 'source down', fix: 'run: keybroker status' };
    const replies: Array<[Record<string, unknown>, number, string]> = [
      [{ ok: false, error }, ERROR_CODES.PERMISSION_DENIED, `keybroker: ${render(error)}\n`],
      [
        { ok: true, profile: 'work', value: 'sk-1', stale: true, warning },
        0,
        `keybroker: warning: serving a cached value past its TTL: ${render(warning)}\n`,
      ],
    ];
    for (const [reply, code, stderr] of replies) {
      const server = await recordingServer(socket, reply);
      try {
        const r = await run(binary(), ['work'], { env: { PATH: noCompilerPath, KEYBROKER_SOCKET: socket } });
        expect({ code: r.code, stderr: r.stderr }).toEqual({ code, stderr });
      } finally {
        await server.close();
      }
    }
  });

  it('stats the settings files claudeSettingsFiles names: change them, rebuild, and the native shim follows', async () => {
    // The project's local settings in another directory, in the built module the header is made from.
    const consumer = path.join(root, 'dist', 'src', 'shim', 'consumer.js');
    const source = fs.readFileSync(consumer, 'utf8');
    const patched = source.replace('path.join(cwd, S.dir, S.localSettings)', "path.join(cwd, 'team', S.localSettings)");
    expect(patched).not.toBe(source);
    fs.writeFileSync(consumer, patched);
    expect((await build([])).code).toBe(0);
    const project = path.join(root, 'project');
    const at = (file: string, seconds: number): void => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, '{}\n');
      fs.utimesSync(file, seconds, seconds);
    };
    at(path.join(project, 'team', 'settings.local.json'), 1_790_000_100.987654);
    at(path.join(project, '.claude', 'settings.local.json'), 1_790_000_900); // no longer one of them
    const socket = path.join(root, 'sock', 'kb.sock');
    const env = { PATH: process.env.PATH, HOME: root, KEYBROKER_SOCKET: socket, ...CLAUDE_ENV };
    const server = await recordingServer(socket, { ok: true, profile: 'work', value: 'sk-1', stale: false });
    const claude = startFakeClaude(root, env, 'claude', project);
    try {
      expect(await claude.callHelper(`${binary()} work`)).toEqual({ code: 0, stdout: 'sk-1\n', stderr: '' });
      const consumerInfo = (JSON.parse(server.requests[0]!) as { consumer: { settingsMtimeMs?: number } }).consumer;
      // The managed file of this machine, if it has one, may be newer still.
      if (!fs.existsSync('/etc/claude-code/managed-settings.json'))
        expect(consumerInfo.settingsMtimeMs).toBe(1_790_000_100_987);
    } finally {
      claude.close();
      await server.close();
    }
  });

  it('no answer within its wait: prints renderError(noAnswerError()), TIMEOUT', async () => {
    // A wait of 1 s instead of 125, in the built module the header is made from.
    const messages = path.join(root, 'dist', 'src', 'protocol', 'messages.js');
    const source = fs.readFileSync(messages, 'utf8');
    const patched = source.replace(
      'CLIENT_REPLY_TIMEOUT_MS = MAX_PROFILE_TIMEOUT_MS + 5_000;',
      'CLIENT_REPLY_TIMEOUT_MS = 1_000;',
    );
    expect(patched).not.toBe(source);
    fs.writeFileSync(messages, patched);
    const built = (await import(pathToFileURL(messages).href)) as {
      renderError: typeof renderError;
      noAnswerError: typeof noAnswerError;
    };
    expect((await build([])).code).toBe(0);
    // A daemon that takes the request and never answers.
    const socket = path.join(root, 'sock', 'kb.sock');
    fs.mkdirSync(path.dirname(socket), { mode: 0o700 });
    const held: net.Socket[] = [];
    const server = net.createServer((c) => void held.push(c.on('error', () => {})));
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      const r = await run(binary(), ['work'], { env: { PATH: noCompilerPath, KEYBROKER_SOCKET: socket } });
      expect(r).toMatchObject({
        code: ERROR_CODES.TIMEOUT,
        stdout: '',
        stderr: `keybroker: ${built.renderError(built.noAnswerError())}\n`,
      });
    } finally {
      for (const c of held) c.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a compile error fails the build, but never an install', async () => {
    fs.appendFileSync(path.join(root, 'src/shim/keybroker-shim.c'), '\nthis is not C;\n');
    const built = await build([]);
    expect(built.code).toBe(1);
    expect(built.stdout).toContain('failed');
    const installed = await build(['--install']);
    expect(installed.code).toBe(0);
    expect(fs.existsSync(binary())).toBe(false);
  });

  it('a compiler that refuses the hardening flags still builds both, without a warning', async () => {
    // Without -D_FORTIFY_SOURCE nothing defines the XSI names (realpath) that the sources use.
    const refusing = path.join(root, 'cc-without-hardening');
    fs.writeFileSync(
      refusing,
      '#!/bin/sh\nfor a in "$@"; do case "$a" in -fstack-protector-strong) echo "unsupported: $a" >&2; exit 1;; esac; done\nexec cc "$@"\n',
      { mode: 0o755 },
    );
    const r = await build([], { CC: refusing });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n').filter((l) => l.includes('(without hardening flags: unsupported)'))).toHaveLength(
      TARGETS,
    );
    expect(fs.existsSync(binary())).toBe(true);
  });

  it('a warning fails our build (-Werror), but neither fails nor shows in an install', async () => {
    fs.appendFileSync(path.join(root, 'src/shim/keybroker-shim.c'), '\nstatic int never_used;\n');
    const built = await build([]);
    expect(built.code).toBe(1);
    expect(built.stderr).toContain('never_used');
    expect(fs.existsSync(binary())).toBe(false);
    const installed = await build(['--install']);
    expect(installed).toMatchObject({ code: 0, stderr: '' });
    expect(fs.existsSync(binary())).toBe(true);
  });

  it('generates its header from the built TypeScript, saying so on its first line', async () => {
    const r = await run(process.execPath, [path.join(root, 'scripts', 'native-header.mjs')], { cwd: root });
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/^\/\* Generated by scripts\/native-header\.mjs .*do not edit/);
    expect(r.stdout).toContain(`#define KB_EXIT_UNSAFE_PATH ${ERROR_CODES.UNSAFE_PATH}`);
  });

  it('an unexpected failure (here dist/native is a file) fails the build, but an install only says so', async () => {
    fs.mkdirSync(path.join(root, 'dist'), { recursive: true });
    fs.writeFileSync(path.join(root, 'dist', 'native'), 'not a directory');
    expect((await build([])).code).not.toBe(0);
    const installed = await build(['--install']);
    expect(installed.code).toBe(0);
    expect(installed.stdout.trim().split('\n')).toHaveLength(TARGETS);
    expect(installed.stderr).toBe('');
  });

  it.each([['dist/src/shim/shim-messages.js'], ['scripts/native-header.mjs']])(
    'as the install script of a package without %s (a header input): one line that says so, status 0',
    async (file) => {
      fs.rmSync(path.join(root, file));
      const r = await build(['--install']);
      expect(r).toMatchObject({ code: 0, stderr: '' });
      expect(r.stdout.trim().split('\n')).toHaveLength(TARGETS);
      expect(r.stdout).toContain(path.basename(file));
      expect(fs.existsSync(binary())).toBe(false);
    },
  );

  it('as the install script of a checkout whose dist/ is not built yet: quietly nothing', async () => {
    fs.rmSync(path.join(root, 'dist'), { recursive: true });
    const r = await build(['--install']);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
  });

  it('builds the hardening addon as a Node-API module that this node loads, without node-gyp', async () => {
    expect((await build([])).code).toBe(0);
    const probe = await run(process.execPath, [
      '-e',
      'const a = require(process.argv[1]); console.log(Object.keys(a).sort().join(" "), a.setCoreLimitZero())',
      addon(),
    ]);
    expect(probe).toMatchObject({ code: 0, stderr: '' });
    expect(probe.stdout).toBe('ancestry executablePath peerCredentials setCoreLimitZero setNonDumpable 0\n');
  });

  it('without node-api-headers: the addon is not built, which fails our build but not an install; the shim still is', async () => {
    fs.rmSync(path.join(root, 'node_modules'), { recursive: true });
    const built = await build([]);
    expect(built.code).toBe(1);
    expect(fs.existsSync(binary())).toBe(true);
    expect(fs.existsSync(addon())).toBe(false);
    const installed = await build(['--install']);
    expect(installed).toMatchObject({ code: 0, stderr: '' });
    expect(installed.stdout.trim().split('\n')).toHaveLength(TARGETS);
    expect(fs.existsSync(binary())).toBe(true);
    expect(fs.existsSync(addon())).toBe(false);
  });

  it('removes an addon left from an earlier build or another machine, even when it cannot build one', async () => {
    fs.mkdirSync(path.dirname(addon()), { recursive: true });
    fs.writeFileSync(addon(), 'foreign', { mode: 0o755 });
    expect((await build(['--install'], { PATH: noCompilerPath })).code).toBe(0);
    expect(fs.existsSync(addon())).toBe(false);
  });
});
