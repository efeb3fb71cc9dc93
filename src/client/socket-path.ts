// Where the daemon listens and the clients connect. Shared by daemon, CLI and shim (built-ins only).
import os from 'node:os';
import path from 'node:path';

export interface SocketPathInput {
  /** --socket */
  flag?: string | undefined;
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  home?: string;
}

export interface ResolvedSocketPath {
  path: string;
  /** Which rule chose it, for `doctor` and error messages. */
  from: '--socket' | 'KEYBROKER_SOCKET' | 'XDG_RUNTIME_DIR' | 'default';
}

/** sun_path is 108 bytes on Linux and 104 on macOS, terminator included. */
export const MAX_SOCKET_PATH_BYTES = 103;

/**
 * The names the socket path is made of, as data: the native shim's copies are generated from
 * these by scripts/build-native.mjs.
 */
export const SOCKET_PATH_NAMES = {
  socketEnv: 'KEYBROKER_SOCKET',
  runtimeDirEnv: 'XDG_RUNTIME_DIR',
  stateHomeEnv: 'XDG_STATE_HOME',
  /** Under $HOME on macOS, in place of the state directory. */
  darwinStateDir: 'Library/Application Support',
  /** Under $HOME elsewhere, when XDG_STATE_HOME is not an absolute path. */
  stateDir: '.local/state',
  dir: 'keybroker',
  file: 'keybroker.sock',
} as const;
const N = SOCKET_PATH_NAMES;

export function resolveSocketPath(input: SocketPathInput = {}): ResolvedSocketPath {
  const env = input.env ?? process.env;
  if (input.flag) return { path: path.resolve(expandHome(input.flag, input.home)), from: '--socket' };
  const fromEnv = env[N.socketEnv];
  if (fromEnv) return { path: path.resolve(expandHome(fromEnv, input.home)), from: N.socketEnv };
  const runtime = env[N.runtimeDirEnv];
  if (runtime && path.isAbsolute(runtime)) {
    return { path: path.join(runtime, N.dir, N.file), from: N.runtimeDirEnv };
  }
  return { path: path.join(defaultStateDir(input.platform, input.home, env), N.file), from: 'default' };
}

/** The per-user private directory used when there is no XDG_RUNTIME_DIR. */
export function defaultStateDir(
  platform: NodeJS.Platform = process.platform,
  home: string = os.homedir(),
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (platform === 'darwin') return path.join(home, N.darwinStateDir, N.dir);
  const xdgState = env[N.stateHomeEnv];
  const base = xdgState && path.isAbsolute(xdgState) ? xdgState : path.join(home, N.stateDir);
  return path.join(base, N.dir);
}

export function expandHome(p: string, home: string = os.homedir()): string {
  if (p === '~') return home;
  if (p.startsWith('~/')) return path.join(home, p.slice(2));
  return p;
}

/** The inverse, for showing paths: /home/ada/x → ~/x. */
export function collapseHome(p: string, home: string): string {
  return home && (p === home || p.startsWith(`${home}/`)) ? `~${p.slice(home.length)}` : p;
}
