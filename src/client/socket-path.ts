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

export function resolveSocketPath(input: SocketPathInput = {}): ResolvedSocketPath {
  const env = input.env ?? process.env;
  if (input.flag) return { path: path.resolve(expandHome(input.flag, input.home)), from: '--socket' };
  if (env.KEYBROKER_SOCKET)
    return { path: path.resolve(expandHome(env.KEYBROKER_SOCKET, input.home)), from: 'KEYBROKER_SOCKET' };
  if (env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR)) {
    return { path: path.join(env.XDG_RUNTIME_DIR, 'keybroker', 'keybroker.sock'), from: 'XDG_RUNTIME_DIR' };
  }
  return { path: path.join(defaultStateDir(input.platform, input.home, env), 'keybroker.sock'), from: 'default' };
}

/** The per-user private directory used when there is no XDG_RUNTIME_DIR. */
export function defaultStateDir(
  platform: NodeJS.Platform = process.platform,
  home: string = os.homedir(),
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'keybroker');
  const xdgState = env.XDG_STATE_HOME;
  const base = xdgState && path.isAbsolute(xdgState) ? xdgState : path.join(home, '.local', 'state');
  return path.join(base, 'keybroker');
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
