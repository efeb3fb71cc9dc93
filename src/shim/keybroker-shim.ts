#!/usr/bin/env node
// keybroker-shim: what Claude Code's apiKeyHelper points at. It asks the daemon for a profile's
// key over the private socket and prints it: exactly the value and a newline on stdout, exit 0.
// On failure: nothing on stdout, one line on stderr (Claude Code shows it to the user), and an
// exit status per cause. It never prompts and never reads stdin.
//
// Three modules beside this one: consumer.ts (who is asking), output-format.ts (the sibling
// helpers' formats) and ../client/autostart.ts (starting and replacing the daemon).
//
// Start-up time is the product here, so this file imports only Node built-ins and the protocol
// module (no commander, pino, yaml or zod), and writes with fs.writeSync rather than
// process.stdout (which would load the stream machinery). The build bundles it with the protocol
// module into one CommonJS file (dist/src/shim/keybroker-shim.cjs): Node 20 sets up its ES-module
// loader only for an ES-module entry point, which costs more than everything else the shim does.
import fs from 'node:fs';
import path from 'node:path';
import { askToStop, requestWithAutostart } from '../client/autostart.js';
import { BUILD_ID, daemonIdentity, describeBuild, isOtherBuild, otherBuild, VERSION } from '../client/build-info.js';
import {
  buildGetRequest,
  CLIENT_REPLY_TIMEOUT_MS,
  exitCodeFor,
  ERROR_CODES,
  MAX_HELPER_TTL_MS,
  noAnswerError,
  REFRESH_INTERVAL_OPTION,
  renderError,
  type WireError,
} from '../protocol/messages.js';
import { resolveSocketPath } from '../client/socket-path.js';
import { findConsumer } from './consumer.js';
import { FORMATS, formatValue, HEADER_NAME, type Format } from './output-format.js';
import { oneLine, SHIM_TEXT } from './shim-messages.js';

const USAGE = `usage: keybroker-shim [--refresh] [--format FORMAT] [--header NAME] [--refresh-interval-ms MS]
                      [--socket PATH] [PROFILE]

Prints the key of PROFILE from the keybroker daemon, starting the daemon if none is
running (unless KEYBROKER_NO_AUTOSTART=1). Without PROFILE the daemon picks the profile
of the working directory (the config's directories: map), else "default". For Claude Code:
  "apiKeyHelper": "${'/path/to/keybroker-shim'}"   (or run: keybroker setup claude)

  --refresh      fetch from the source now instead of the cache
  --format F     raw (default): the value itself
                 aws-credentials: awsCredentialExport's JSON, for an aws-credentials:// profile
                 headers: otelHeadersHelper's and MCP headersHelper's JSON object (the
                 value as a Bearer token, or a JSON object value passed through)
  --header NAME  with --format headers (which it implies): put a plain value in header
                 NAME as it is, e.g. --header X-API-Key, instead of Authorization: Bearer
  --refresh-interval-ms MS
                 how often the program running this shim runs it on its own schedule (Codex's
                 refresh_interval_ms; keybroker setup codex writes both): a run much sooner
                 means the key it holds was rejected
  --socket PATH  the daemon's socket (default: $KEYBROKER_SOCKET, then
                 $XDG_RUNTIME_DIR/keybroker/keybroker.sock, then ~/.local/state/keybroker/)
  -v, --version  print this shim's version and build

Exit status: 0 ok, 3 daemon unreachable, 4 unknown profile, 5 source error, 6 timeout,
7 key rejected, 8 config invalid, ${ERROR_CODES.SANDBOXED} run inside a sandbox (by design: Claude Code's
sandbox keeps its commands from the daemon); every status: docs/commands.md#exit-status
(in the keybroker package, or its repository).`;

/**
 * The daemon enforces each profile's timeout (at most MAX_PROFILE_TIMEOUT_MS) and says which
 * source was slow; the shim waits longer than that, so it hears the daemon's answer.
 */
const REQUEST_TIMEOUT_MS = CLIENT_REPLY_TIMEOUT_MS;
const ME = { version: VERSION, build: BUILD_ID };

interface Args {
  /** Only when given: without it the daemon chooses by directory. */
  profile: string | undefined;
  refresh: boolean;
  socket: string | undefined;
  format: Format;
  /** --header: the header a plain value goes in (--format headers). */
  header: string | undefined;
  /** --refresh-interval-ms: how often the consumer runs the shim on schedule. */
  refreshIntervalMs: number | undefined;
  /** The options given, by name (consumer detection's `arg` conditions). */
  options: Set<string>;
}

/** The options parseArgs knows, with or without =VALUE; the ones given are recorded by name. */
const OPTIONS: ReadonlySet<string> = new Set([
  '--refresh',
  '--socket',
  '--format',
  '--header',
  REFRESH_INTERVAL_OPTION,
]);

function parseArgs(argv: string[]): Args | { help: true } | { version: true } | { error: string } {
  const args: Args = {
    profile: undefined,
    refresh: false,
    socket: undefined,
    format: 'raw',
    header: undefined,
    refreshIntervalMs: undefined,
    options: new Set(),
  };
  let formatGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const option = /^--[a-z-]+/.exec(a)?.[0];
    if (option && OPTIONS.has(option)) args.options.add(option);
    if (a === '-h' || a === '--help') return { help: true };
    if (a === '-v' || a === '--version') return { version: true };
    if (a === '--refresh') args.refresh = true;
    else if (a === '--socket') {
      const v = argv[++i];
      if (!v) return { error: '--socket needs a path' };
      args.socket = v;
    } else if (a.startsWith('--socket=')) args.socket = a.slice('--socket='.length);
    else if (a === '--format' || a.startsWith('--format=')) {
      const v = a === '--format' ? argv[++i] : a.slice('--format='.length);
      if (!v || !(FORMATS as readonly string[]).includes(v))
        return { error: `--format takes one of: ${FORMATS.join(', ')}` };
      args.format = v as Format;
      formatGiven = true;
    } else if (a === '--header' || a.startsWith('--header=')) {
      const v = a === '--header' ? argv[++i] : a.slice('--header='.length);
      if (!v || !HEADER_NAME.test(v)) return { error: '--header takes an HTTP header name, such as X-API-Key' };
      args.header = v;
    } else if (a === REFRESH_INTERVAL_OPTION || a.startsWith(`${REFRESH_INTERVAL_OPTION}=`)) {
      const v = a === REFRESH_INTERVAL_OPTION ? argv[++i] : a.slice(REFRESH_INTERVAL_OPTION.length + 1);
      const ms = /^[0-9]{1,10}$/.test(v ?? '') ? Number(v) : NaN;
      if (!(ms > 0 && ms <= MAX_HELPER_TTL_MS))
        return {
          error: `${REFRESH_INTERVAL_OPTION} takes a whole number of milliseconds from 1 to ${MAX_HELPER_TTL_MS}`,
        };
      args.refreshIntervalMs = ms;
    } else if (a.startsWith('-')) return { error: `unknown option ${a}` };
    else if (args.profile !== undefined) return { error: `one profile only (got "${args.profile}" and "${a}")` };
    else args.profile = a;
  }
  if (args.header !== undefined) {
    if (formatGiven && args.format !== 'headers')
      return { error: `--header goes with --format headers, not --format ${args.format}` };
    args.format = 'headers';
  }
  return args;
}

function fail(code: string, message: string): never {
  // One line: Claude Code shows it as "apiKeyHelper failed: exited N: <stderr>".
  fs.writeSync(2, `${SHIM_TEXT.prefix}${oneLine(message)}\n`);
  process.exit(exitCodeFor(code));
}

function failWith(error: WireError): never {
  fail(error.code, renderError(error));
}

// ---- main ----

async function main(): Promise<void> {
  const started = Date.now();
  const parsed = parseArgs(process.argv.slice(2));
  if ('help' in parsed) {
    fs.writeSync(1, `${USAGE}\n`);
    process.exit(0);
  }
  if ('version' in parsed) {
    fs.writeSync(1, `${describeBuild(ME)}\n`);
    process.exit(0);
  }
  if ('error' in parsed) fail('USAGE', `${parsed.error} (see keybroker-shim --help)`);
  const socketPath = resolveSocketPath({ flag: parsed.socket }).path;
  const cwd = workingDirectory();
  const request = buildGetRequest({
    profile: parsed.profile,
    cwd,
    refresh: parsed.refresh,
    consumer: await findConsumer({
      format: parsed.format,
      options: parsed.options,
      refreshIntervalMs: parsed.refreshIntervalMs,
      cwd,
    }),
  });

  // argv[1], resolved through npm's bin symlink: the built shim is a CommonJS bundle, where
  // import.meta does not exist. (.native: one realpath(3) call, cheaper at start-up.)
  const cli = path.join(path.dirname(fs.realpathSync.native(process.argv[1]!)), '..', 'cli', 'main.js');
  const reply = await requestWithAutostart(socketPath, request, {
    cli,
    timeoutMs: REQUEST_TIMEOUT_MS,
    noReply: noAnswerError(REQUEST_TIMEOUT_MS),
    startedAt: started,
  });
  if (!reply.ok) failWith(reply.error);
  if (!('value' in reply) || typeof reply.value !== 'string') fail('INTERNAL', SHIM_TEXT.noValue);
  if (reply.stale && reply.warning) {
    // A warning without a string message is a reply of an unknown shape: an internal error.
    if (typeof reply.warning.message !== 'string') throw new TypeError('warning without a message');
    fs.writeSync(2, `${SHIM_TEXT.prefix}${SHIM_TEXT.staleWarning}${oneLine(renderError(reply.warning))}\n`);
  }
  const out = formatValue(reply.value, parsed.format, parsed.header);
  if (out === undefined) {
    const profile = typeof reply.profile === 'string' ? reply.profile : (parsed.profile ?? 'default');
    failWith({
      code: 'INVALID_VALUE',
      profile,
      message: 'it does not hold AWS credentials',
      fix: 'give it a source such as aws-credentials://default',
    });
  }
  fs.writeSync(1, `${out}\n`);
  const daemon = daemonIdentity(reply.daemon);
  if (daemon && isOtherBuild(ME, daemon)) {
    if (daemon.startedBy === 'autostart') {
      // Ours to replace: it stops after this reply (no waiting here), and the next call
      // starts this build.
      askToStop(daemon.pid);
    } else {
      const warning = renderError(otherBuild(ME, daemon, process.getuid?.()));
      fs.writeSync(2, `${SHIM_TEXT.prefix}${SHIM_TEXT.warning}${warning}\n`);
    }
  }
  process.exit(0);
}

/** The directory Claude Code ran us in (the project); none when it has been deleted under us. */
function workingDirectory(): string | undefined {
  try {
    return process.cwd();
  } catch {
    return undefined;
  }
}

main().catch(() => {
  // Never print the error itself: nothing here should throw, and if it does it may hold a value.
  fs.writeSync(2, `${SHIM_TEXT.prefix}${SHIM_TEXT.internalError}\n`);
  process.exit(ERROR_CODES.INTERNAL);
});
