// doctor's checks of Claude Code's sandbox: could the agent's sandboxed commands reach a key —
// through the daemon's socket, the config, a key or token file, the state directory (audit trail
// and salt), a variable that holds a credential — or run outside the sandbox? Stable ids:
//   sandbox           on, and able to start here (Linux: bubblewrap and socat)     ok | warn
//   sandbox-escape    no way out: allowUnsandboxedCommands is false                 ok | warn
//   sandbox-excluded  excludedCommands (only when some are set)                     ok | warn
//   sandbox-socket    Unix sockets blocked for sandboxed commands                   ok | warn
//   sandbox-keychain  keyring: profiles' keychain out of reach (only when there are some) ok | warn
//   sandbox-config    the keybroker config unreadable inside                        ok | warn
//   sandbox-keys      every key and token file unreadable inside                    ok | warn
//   sandbox-state     the audit trail and its salt unreadable inside                ok | warn
//   sandbox-env       credential variables unset inside (only when sources read some) ok | warn
//   sandbox-file-tools  Read(…) deny rules keep Claude Code's own file tools out     ok | warn
//   sandbox-proc      enableWeakerNestedSandbox (only when set)                     warn
// With the sandbox off, only `sandbox` is reported: every other way is open.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { collapseHome } from '../client/socket-path.js';
import type { ClaudeContext, SettingsFile } from './claude-settings.js';
import { sandboxView, type SandboxPath, type SandboxView } from './claude-sandbox.js';
import type { DoctorCheck } from './doctor.js';
import { splitCommand } from './helper-command.js';
import type { KeyLocations, KeyPath, KeyPathKind } from './key-locations.js';
import { findOnPath } from './service-manager.js';

export interface SandboxCheckOptions extends ClaudeContext {
  files: readonly SettingsFile[];
  locations: KeyLocations;
  /** Claude Code's environment: the shell's, with the settings' env blocks over it. */
  claudeEnv: NodeJS.ProcessEnv;
}

const SETUP = 'keybroker setup claude --sandbox';

export async function sandboxChecks(options: SandboxCheckOptions): Promise<DoctorCheck[]> {
  const view = sandboxView(options.files, options);
  const home = options.home;
  const show = (p: string): string => collapseHome(p, home);
  if (!view.enabled) {
    return [
      {
        id: 'sandbox',
        status: 'warn',
        message: `Claude Code's sandbox is off${view.enabledBy ? ` (sandbox.enabled: false in ${show(view.enabledBy)})` : ''}: the agent's commands run as you and can ask keybroker for a key, read the config, key files and audit trail`,
        fix: SETUP,
      },
    ];
  }
  const checks: DoctorCheck[] = [await availability(view, options)];
  checks.push(
    view.unsandboxedAllowed
      ? {
          id: 'sandbox-escape',
          status: 'warn',
          message:
            'sandbox.allowUnsandboxedCommands is not false: the model may ask to run a command outside the sandbox (one permission prompt away from every key)',
          fix: SETUP,
        }
      : {
          id: 'sandbox-escape',
          status: 'ok',
          message: 'every Bash command runs sandboxed (allowUnsandboxedCommands: false)',
        },
  );
  const excluded = excludedCheck(view, show);
  if (excluded) checks.push(excluded);
  checks.push(socketCheck(view, options, show));
  const keychain = keychainCheck(view, options, show);
  if (keychain) checks.push(keychain);
  for (const kind of ['config', 'key', 'state'] as const) checks.push(readCheck(kind, view, options.locations, show));
  const env = envCheck(view, options);
  if (env) checks.push(env);
  checks.push(fileToolsCheck(view, options.locations, show));
  if (view.weakerNestedSandbox.value) {
    checks.push({
      id: 'sandbox-proc',
      status: 'warn',
      message: `sandbox.enableWeakerNestedSandbox is on (${show(view.weakerNestedSandbox.file!)}): the host's /proc stays readable inside, so sandboxed commands can read the daemon's environment and memory unless the hardening addon made it non-dumpable`,
      fix: `remove enableWeakerNestedSandbox from ${show(view.weakerNestedSandbox.file!)} where the host allows a fresh /proc`,
    });
  }
  return checks;
}

/** On Linux the sandbox needs bubblewrap and socat (Claude Code finds them on PATH) and user namespaces. */
async function availability(view: SandboxView, options: SandboxCheckOptions): Promise<DoctorCheck> {
  const closed = view.failIfUnavailable
    ? 'Claude Code refuses to start (failIfUnavailable)'
    : "Claude Code runs the agent's commands unsandboxed, after a warning";
  if (options.platform !== 'linux' && options.platform !== 'darwin') {
    return {
      id: 'sandbox',
      status: 'warn',
      message: `sandbox.enabled is on, but Claude Code's sandbox does not confine Bash commands on ${options.platform} as it does on Linux and macOS`,
    };
  }
  if (options.platform === 'linux') {
    const missing: string[] = [];
    const bwrap = view.bwrapPath ?? (await findOnPath('bwrap', options.claudeEnv.PATH));
    if (!bwrap || !fs.existsSync(bwrap)) missing.push('bubblewrap (bwrap)');
    const socat = view.socatPath ?? (await findOnPath('socat', options.claudeEnv.PATH));
    if (!socat || !fs.existsSync(socat)) missing.push('socat');
    if (missing.length > 0) {
      return {
        id: 'sandbox',
        status: 'warn',
        message: `sandbox.enabled is on, but ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not on Claude Code's PATH: ${closed}`,
        fix: 'install them (Debian, Ubuntu: sudo apt-get install bubblewrap socat)',
      };
    }
    const probe = spawnSync(bwrap!, ['--ro-bind', '/', '/', '--unshare-net', 'true'], {
      timeout: 5_000,
      encoding: 'utf8',
    });
    if (probe.status !== 0) {
      const why =
        (probe.stderr ?? '').split('\n')[0]?.trim() || (probe.error ? probe.error.message : `exit ${probe.status}`);
      return {
        id: 'sandbox',
        status: 'warn',
        message: `sandbox.enabled is on, but bubblewrap cannot start a sandbox here (${why}): ${closed}`,
        fix: 'allow unprivileged user namespaces (e.g. kernel.unprivileged_userns_clone=1, or an AppArmor profile for bwrap)',
      };
    }
  }
  return {
    id: 'sandbox',
    status: 'ok',
    message: `Claude Code's sandbox is on${view.enabledBy ? ` (${collapseHome(view.enabledBy, options.home)})` : ''}${options.platform === 'linux' ? ', bubblewrap and socat are there' : ''}${view.failIfUnavailable ? '' : '; where it cannot start, commands would run unconfined (failIfUnavailable is off)'}`,
  };
}

/** Programs that read any file or open any socket: excluded, they hand the agent a key. */
const KEY_READERS = new Set([
  'keybroker',
  'keybroker-shim',
  'cat',
  'head',
  'tail',
  'less',
  'more',
  'grep',
  'rg',
  'sed',
  'awk',
  'cp',
  'dd',
  'base64',
  'xxd',
  'od',
  'strings',
  'jq',
  'node',
  'python',
  'python3',
  'perl',
  'ruby',
  'sh',
  'bash',
  'zsh',
  'env',
  'socat',
  'nc',
  'ncat',
  'curl',
  'secret-tool',
]);

function excludedCheck(view: SandboxView, show: (p: string) => string): DoctorCheck | undefined {
  if (view.excludedCommands.length === 0) return undefined;
  const programOf = (pattern: string): string => {
    const word = splitCommand(pattern.trim()).words[0] ?? '';
    return path.basename(word.replace(/:?\*$/, '').replace(/:$/, ''));
  };
  const risky = view.excludedCommands.filter(({ pattern }) => {
    const program = programOf(pattern);
    return program === '' || program.includes('*') || KEY_READERS.has(program);
  });
  const all = view.excludedCommands.map((e) => `"${e.pattern}"`).join(', ');
  if (risky.length > 0) {
    return {
      id: 'sandbox-excluded',
      status: 'warn',
      message: `sandbox.excludedCommands runs ${risky.map((e) => `"${e.pattern}" (${show(e.file)})`).join(', ')} outside the sandbox: such a command can read a key file or ask keybroker for a key (after a permission prompt)`,
      fix: `remove ${risky.map((e) => `"${e.pattern}"`).join(', ')} from excludedCommands`,
    };
  }
  return {
    id: 'sandbox-excluded',
    status: 'ok',
    message: `sandbox.excludedCommands runs ${all} outside the sandbox, each after a permission prompt; none of them is a known way to a key, but any program that reads files is one`,
  };
}

function isWithin(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir === '/' ? '/' : `${dir}/`);
}

function socketCheck(view: SandboxView, options: SandboxCheckOptions, show: (p: string) => string): DoctorCheck {
  const socket = options.locations.socket;
  if (view.allowAllUnixSockets.value) {
    return {
      id: 'sandbox-socket',
      status: 'warn',
      message: `sandbox.network.allowAllUnixSockets is on (${show(view.allowAllUnixSockets.file!)}): sandboxed commands can connect to keybroker's socket and ask for any key (and to the session bus, where keychain keys live)`,
      fix: `remove allowAllUnixSockets from ${show(view.allowAllUnixSockets.file!)}`,
    };
  }
  const allowing = view.allowUnixSockets.filter((e) => isWithin(socket, e.path));
  if (allowing.length > 0 && options.platform === 'darwin') {
    return {
      id: 'sandbox-socket',
      status: 'warn',
      message: `sandbox.network.allowUnixSockets lets sandboxed commands reach keybroker's socket ${show(socket)} (${allowing.map((e) => `"${e.raw}" in ${show(e.file)}`).join(', ')})`,
      fix: `remove ${allowing.map((e) => `"${e.raw}"`).join(', ')} from allowUnixSockets`,
    };
  }
  return {
    id: 'sandbox-socket',
    status: 'ok',
    message: `sandboxed commands cannot connect to keybroker's socket ${show(socket)} (Unix sockets are blocked)${allowing.length > 0 ? '; allowUnixSockets names it, but Linux ignores that setting' : ''}`,
  };
}

/**
 * A keyring: key is in no file: on Linux the Secret Service answers over the D-Bus session bus, a
 * Unix socket, which the sandbox refuses as it refuses keybroker's (measured: secret-tool lookup
 * fails with EPERM inside). macOS is not measured: Claude Code's sandbox there allows some Mach
 * services, and an entry `keybroker key set` wrote trusts the node binary.
 */
function keychainCheck(
  view: SandboxView,
  options: SandboxCheckOptions,
  show: (p: string) => string,
): DoctorCheck | undefined {
  const names = options.locations.keychain;
  if (names.length === 0) return undefined;
  const profiles = `profile${names.length > 1 ? 's' : ''} ${names.map((n) => `"${n}"`).join(', ')} ${names.length > 1 ? 'keep their keys' : 'keeps its key'}`;
  if (options.platform === 'darwin') {
    return {
      id: 'sandbox-keychain',
      status: 'warn',
      message: `${profiles} in the login keychain; whether Claude Code's macOS sandbox keeps its commands from the keychain is not measured, and an entry keybroker key set wrote lets the node binary read it without asking`,
      fix: "check from the agent's Bash tool: security find-generic-password -s SERVICE -a ACCOUNT -w must fail there",
    };
  }
  if (view.allowAllUnixSockets.value) {
    return {
      id: 'sandbox-keychain',
      status: 'warn',
      message: `${profiles} in the OS keychain, and sandbox.network.allowAllUnixSockets is on (${show(view.allowAllUnixSockets.file!)}): sandboxed commands can ask the Secret Service on the session bus`,
      fix: `remove allowAllUnixSockets from ${show(view.allowAllUnixSockets.file!)}`,
    };
  }
  return {
    id: 'sandbox-keychain',
    status: 'ok',
    message: `${profiles} in the Secret Service, which answers over the D-Bus session bus: a Unix socket, which the sandbox refuses (nothing to deny by path)`,
  };
}

const KIND_CHECK: Record<KeyPathKind, { id: string; what: string }> = {
  config: { id: 'sandbox-config', what: 'the keybroker config' },
  key: { id: 'sandbox-keys', what: 'key and token files' },
  state: { id: 'sandbox-state', what: 'the audit trail and its salt' },
};

/** Why sandboxed commands can read `p` (undefined: they cannot). */
function readableBecause(p: KeyPath, view: SandboxView, show: (p: string) => string): string | undefined {
  if (view.filesystemDisabled.value)
    return `filesystem isolation is off (sandbox.filesystem.disabled in ${show(view.filesystemDisabled.file!)})`;
  // The kernel opens what a path leads to; a denied link leaves its target readable elsewhere.
  const target = p.real ?? p.path;
  const real = (e: SandboxPath): string => realOr(e.path);
  if (!view.denyRead.some((e) => !e.glob && (isWithin(target, real(e)) || isWithin(target, e.path))))
    return 'not in sandbox.filesystem.denyRead';
  const reopened = view.allowRead.find((e) => isWithin(target, real(e)) || isWithin(real(e), target));
  return reopened
    ? `sandbox.filesystem.allowRead opens it again ("${reopened.raw}" in ${show(reopened.file)})`
    : undefined;
}

function realOr(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

function readCheck(
  kind: KeyPathKind,
  view: SandboxView,
  locations: KeyLocations,
  show: (p: string) => string,
): DoctorCheck {
  const { id, what } = KIND_CHECK[kind];
  const paths = locations.paths.filter((p) => p.kind === kind);
  const open = paths.flatMap((p) => {
    const why = readableBecause(p, view, show);
    return why ? [`${show(p.path)}${p.real ? ` (→ ${show(p.real)})` : ''}: ${why}`] : [];
  });
  const holding = locations.holdingSocket.filter((p) => p.kind === kind);
  for (const p of holding)
    open.push(`${show(p.path)}: holds keybroker's socket too, so it cannot be denied without cutting clients off`);
  if (open.length > 0) {
    return {
      id,
      status: 'warn',
      message: `sandboxed commands can read ${what}: ${open.join('; ')}`,
      fix:
        holding.length > 0
          ? 'keep the socket elsewhere (KEYBROKER_SOCKET), then: keybroker setup claude --sandbox'
          : SETUP,
    };
  }
  if (kind === 'key' && locations.configProblem) {
    return {
      id,
      status: 'warn',
      message: `which key files to check is not known: ${locations.configProblem}`,
      fix: 'keybroker config check',
    };
  }
  const opaque =
    kind === 'key' && locations.opaque.length > 0
      ? `; profiles ${locations.opaque.map((n) => `"${n}"`).join(', ')} run commands whose own credentials keybroker cannot see`
      : '';
  return {
    id,
    status: 'ok',
    message:
      paths.length === 0
        ? `no ${what} to hide${opaque}`
        : `sandboxed commands cannot read ${what} (${paths.map((p) => show(p.path)).join(', ')})${opaque}`,
  };
}

function envCheck(view: SandboxView, options: SandboxCheckOptions): DoctorCheck | undefined {
  const wanted = options.locations.env;
  if (wanted.length === 0) return undefined;
  const visible = wanted.filter((e) => (options.claudeEnv[e.name] ?? '') !== '' && !view.envHidden.has(e.name));
  if (visible.length > 0) {
    return {
      id: 'sandbox-env',
      status: 'warn',
      message: `sandboxed commands see ${visible.map((e) => `${e.name} (profile ${e.profiles.map((p) => `"${p}"`).join(', ')})`).join(', ')} in Claude Code's environment: a credential the sandbox does not hide`,
      fix: SETUP,
    };
  }
  return {
    id: 'sandbox-env',
    status: 'ok',
    message: `no credential variable of keybroker's sources is visible to sandboxed commands (${wanted.map((e) => e.name).join(', ')})`,
  };
}

/**
 * Claude Code's Read, Grep and Glob tools run in Claude Code itself, not in the sandbox: a read
 * the user allows (one prompt, or an allow rule) reads any file, denyRead or not. Only a Read(…)
 * deny rule stops them (measured on 2.1.332).
 */
function fileToolsCheck(view: SandboxView, locations: KeyLocations, show: (p: string) => string): DoctorCheck {
  const open = locations.paths.filter((p) => {
    const target = p.real ?? p.path;
    return !view.readRules.some((r) => !r.glob && (isWithin(target, realOr(r.path)) || isWithin(target, r.path)));
  });
  if (open.length > 0) {
    return {
      id: 'sandbox-file-tools',
      status: 'warn',
      message: `Claude Code's file tools (Read, Grep, Glob) run outside the sandbox, and no Read(…) deny rule covers ${open.map((p) => show(p.path)).join(', ')}: one permission you grant and they read it`,
      fix: SETUP,
    };
  }
  return {
    id: 'sandbox-file-tools',
    status: 'ok',
    message: "Read(…) deny rules keep Claude Code's file tools (Read, Grep, Glob) out of every path to a key",
  };
}
