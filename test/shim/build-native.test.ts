// scripts/build-native.mjs, run on a copy of what it needs (test/helpers/build-native-tree.ts) so it never
// touches this checkout's dist/: what depends on the Node that runs it, on every Node of CI. The
// native shim hands over to the node that built it, the hardening addon loads in this node, and the
// header is generated from the built TypeScript, so the native shim follows a change to it. How the
// build reacts to the compiler (none, an error, a warning, refused flags, a package missing parts)
// does not depend on Node: build-native-compiler.test.ts. Each describe builds once, in its
// beforeAll, and its tests only read what was built.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, type noAnswerError, type renderError } from '../../src/protocol/messages.js';
import { privateTempDir, run, type RunResult } from '../helpers/daemon.js';
import { recordingServer } from '../helpers/stand-in-daemon.js';
import { CLAUDE_ENV, startFakeClaude } from '../helpers/fake-claude.js';
import { buildTree, type BuildTree } from '../helpers/build-native-tree.js';

// A build (one C compile per target) takes past 30 s on a loaded 2-core machine.
const BUILD_TIMEOUT_MS = 120_000;

describe('a build of the sources as they are', () => {
  let t: BuildTree;
  let built: RunResult;
  beforeAll(async () => {
    t = buildTree();
    built = await t.build([]);
  }, BUILD_TIMEOUT_MS);

  it('builds an executable that answers (here: hands over, finds no Node shim, says so)', async () => {
    expect(built.code).toBe(0);
    expect(built.stdout).toBe(
      'native shim: built dist/native/keybroker-shim with cc\nhardening addon: built dist/native/keybroker-hardening.node with cc\n',
    );
    expect(built.stderr).toBe(''); // no compiler warnings
    const shim = await run(t.binary, ['--help'], { env: { PATH: t.noCompilerPath } });
    expect(shim.code).toBe(ERROR_CODES.INTERNAL);
    expect(shim.stdout).toBe('');
    expect(shim.stderr).toContain(
      `keybroker: cannot find the Node shim ${path.join(t.root, 'dist', 'src', 'shim', 'keybroker-shim.cjs')} beside the native keybroker-shim`,
    );
  });

  it('hands over to KEYBROKER_NODE, else the node that built it; says so when that cannot run', async () => {
    expect(built.code).toBe(0);
    // The built shim in a tree of its own, beside a Node shim that shows how it was run: the shared
    // build's tree has none (the test above).
    const dir = privateTempDir('kb-build-native-handover-');
    const binary = path.join(dir, 'dist', 'native', 'keybroker-shim');
    fs.mkdirSync(path.dirname(binary), { recursive: true });
    fs.copyFileSync(t.binary, binary);
    const nodeShim = path.join(dir, 'dist', 'src', 'shim', 'keybroker-shim.cjs');
    fs.mkdirSync(path.dirname(nodeShim), { recursive: true });
    fs.writeFileSync(
      nodeShim,
      'process.stdout.write(JSON.stringify([process.execPath, ...process.argv.slice(1)]) + "\\n")\n',
    );
    const byBuildNode = await run(binary, ['--format', 'raw', 'w'], { env: { PATH: t.noCompilerPath } });
    expect(JSON.parse(byBuildNode.stdout)).toEqual([
      fs.realpathSync(process.execPath),
      nodeShim,
      '--format',
      'raw',
      'w',
    ]);
    const byEnv = await run(binary, ['--help'], {
      env: { PATH: t.noCompilerPath, KEYBROKER_NODE: path.join(dir, 'no-node') },
    });
    expect(byEnv.code).toBe(ERROR_CODES.INTERNAL);
    expect(byEnv.stderr).toBe(
      `keybroker: cannot run the Node shim ${nodeShim} with ${path.join(dir, 'no-node')} (No such file or directory); put node on PATH or set KEYBROKER_NODE to it\n`,
    );
  });

  it('builds the hardening addon as a Node-API module that this node loads, without node-gyp', async () => {
    expect(built.code).toBe(0);
    const probe = await run(process.execPath, [
      '-e',
      'const a = require(process.argv[1]); console.log(Object.keys(a).sort().join(" "), a.setCoreLimitZero())',
      t.addon,
    ]);
    expect(probe).toMatchObject({ code: 0, stderr: '' });
    expect(probe.stdout).toBe('ancestry executablePath peerCredentials setCoreLimitZero setNonDumpable 0\n');
  });
});

// The built modules the header is made from, changed in three places that do not meet: the words
// around an error's profile and fix (renderError), the shim's wait for an answer, and where the
// project's local Claude Code settings are. One build, and each test checks that the native shim
// follows its own change.
describe('a build after the TypeScript changed: the native shim follows', () => {
  /** The shim's wait: long enough that an answering stand-in is never cut off on a loaded machine. */
  const WAIT_MS = 2_000;
  let t: BuildTree;
  let built: RunResult;
  let messages: { renderError: typeof renderError; noAnswerError: typeof noAnswerError };
  const patch = (file: string, edits: Array<[string, string]>): void => {
    const at = path.join(t.root, 'dist', 'src', file);
    let source = fs.readFileSync(at, 'utf8');
    for (const [from, to] of edits) {
      const patched = source.replace(from, to);
      expect(patched).not.toBe(source);
      source = patched;
    }
    fs.writeFileSync(at, source);
  };
  beforeAll(async () => {
    t = buildTree();
    patch('protocol/messages.js', [
      // Other words around the profile and the fix.
      ['`profile "${profile}": ${line}`', '`[${profile}] ${line}`'],
      ['`${line} — ${fix}`', '`${line} (to fix: ${fix})`'],
      // A wait of 2 s instead of 125.
      ['CLIENT_REPLY_TIMEOUT_MS = MAX_PROFILE_TIMEOUT_MS + 5_000;', `CLIENT_REPLY_TIMEOUT_MS = ${WAIT_MS};`],
    ]);
    // The project's local settings in another directory.
    patch('shim/consumer.js', [['path.join(cwd, S.dir, S.localSettings)', "path.join(cwd, 'team', S.localSettings)"]]);
    messages = (await import(pathToFileURL(path.join(t.root, 'dist', 'src', 'protocol', 'messages.js')).href)) as {
      renderError: typeof renderError;
      noAnswerError: typeof noAnswerError;
    };
    built = await t.build([]);
  }, BUILD_TIMEOUT_MS);

  it('renders an error as renderError does', async () => {
    expect(built.code).toBe(0);
    const socket = path.join(privateTempDir('kb-build-native-render-'), 'sock', 'kb.sock');
    const error = { code: 'PERMISSION_DENIED', message: 'it broke', profile: 'work', fix: 'chmod 600 x' };
    const warning = { code: 'UNAVAILABLE', message: 'source down', fix: 'run: keybroker status' };
    // The changed words, in what the shim must print.
    expect(messages.renderError(error)).toContain('[work]');
    expect(messages.renderError(error)).toContain('(to fix: chmod 600 x)');
    const replies: Array<[Record<string, unknown>, number, string]> = [
      [{ ok: false, error }, ERROR_CODES.PERMISSION_DENIED, `keybroker: ${messages.renderError(error)}\n`],
      [
        { ok: true, profile: 'work', value: 'sk-1', stale: true, warning },
        0,
        `keybroker: warning: serving a cached value past its TTL: ${messages.renderError(warning)}\n`,
      ],
    ];
    for (const [reply, code, stderr] of replies) {
      const server = await recordingServer(socket, reply);
      try {
        const r = await run(t.binary, ['work'], { env: { PATH: t.noCompilerPath, KEYBROKER_SOCKET: socket } });
        expect({ code: r.code, stderr: r.stderr }).toEqual({ code, stderr });
      } finally {
        await server.close();
      }
    }
  });

  it('stats the settings files claudeSettingsFiles names', async () => {
    expect(built.code).toBe(0);
    const home = privateTempDir('kb-build-native-settings-');
    const project = path.join(home, 'project');
    const at = (file: string, seconds: number): void => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, '{}\n');
      fs.utimesSync(file, seconds, seconds);
    };
    at(path.join(project, 'team', 'settings.local.json'), 1_790_000_100.987654);
    at(path.join(project, '.claude', 'settings.local.json'), 1_790_000_900); // no longer one of them
    const socket = path.join(home, 'sock', 'kb.sock');
    const env = { PATH: process.env.PATH, HOME: home, KEYBROKER_SOCKET: socket, ...CLAUDE_ENV };
    const server = await recordingServer(socket, { ok: true, profile: 'work', value: 'sk-1', stale: false });
    const claude = startFakeClaude(home, env, 'claude', project);
    try {
      expect(await claude.callHelper(`${t.binary} work`)).toEqual({ code: 0, stdout: 'sk-1\n', stderr: '' });
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
    expect(built.code).toBe(0);
    // A daemon that takes the request and never answers.
    const socket = path.join(privateTempDir('kb-build-native-wait-'), 'sock', 'kb.sock');
    fs.mkdirSync(path.dirname(socket), { mode: 0o700 });
    const held: net.Socket[] = [];
    const server = net.createServer((c) => void held.push(c.on('error', () => {})));
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      const r = await run(t.binary, ['work'], { env: { PATH: t.noCompilerPath, KEYBROKER_SOCKET: socket } });
      expect(r).toMatchObject({
        code: ERROR_CODES.TIMEOUT,
        stdout: '',
        stderr: `keybroker: ${messages.renderError(messages.noAnswerError())}\n`,
      });
      // It waited its time (and not the 125 s of the sources: run() kills it after 20).
      expect(r.ms).toBeGreaterThanOrEqual(WAIT_MS - 50);
    } finally {
      for (const c of held) c.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
