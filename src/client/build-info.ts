// Which keybroker this is: the release version and the build. Imported by the shim, the CLI and
// the daemon, so a client can tell that the daemon it talks to is another build (an upgrade
// with the old daemon still running).
//
// The version does not change between development builds, so `npm run build` also stamps a
// build id — a hash of the built files (scripts/stamp-build-id.mjs replaces the placeholder below
// in dist/). Code run from source (the tests' in-process daemons) is unstamped: no build id.
import type { WireError } from '../protocol/messages.js';

/** Kept equal to package.json's version (a test checks it); read without touching the disk. */
export const VERSION = '0.1.0';

const STAMPED: string = '@@KEYBROKER_BUILD_ID@@';
// Built from pieces, so stamping (which replaces the whole placeholder) leaves this one alone.
const PLACEHOLDER = ['@@KEYBROKER', 'BUILD_ID@@'].join('_');

/** This build's id, or undefined when running unbuilt sources. */
export const BUILD_ID: string | undefined = STAMPED === PLACEHOLDER ? undefined : STAMPED;

export interface BuildIdentity {
  version: string;
  build?: string | undefined;
}

/**
 * Whether a daemon is another build than this client: another version, or (when both were
 * stamped) another build id. A daemon from before build ids is compared by version only.
 */
export function isOtherBuild(client: BuildIdentity, daemon: BuildIdentity): boolean {
  if (client.version !== daemon.version) return true;
  return client.build !== undefined && daemon.build !== undefined && client.build !== daemon.build;
}

/** "0.1.0 (build 3f2a9c1e0b7d)" for messages. */
export function describeBuild(b: BuildIdentity): string {
  return b.build ? `${b.version} (build ${b.build})` : b.version;
}

/** How to restart a daemon, by who started it: the service manager's restart, or keybroker's. */
export function restartCommand(startedBy: string | undefined, uid?: number): string {
  if (startedBy === 'systemd') return 'systemctl --user restart keybroker.service';
  if (startedBy === 'launchd') return `launchctl kickstart -k gui/${uid ?? '$(id -u)'}/dev.keybroker.agent`;
  return 'keybroker restart';
}

/**
 * What a client says when the daemon is another build, as an error's fields (renderError makes
 * the line): which daemon and which build, and as the fix the command that replaces it.
 */
export function otherBuild(
  client: BuildIdentity,
  daemon: BuildIdentity & { pid: number; startedBy?: string | undefined },
  uid?: number,
): Pick<WireError, 'message' | 'fix'> {
  return otherBuildFields(
    daemon.pid,
    describeBuild(daemon),
    describeBuild(client),
    restartCommand(daemon.startedBy, uid),
  );
}

/** otherBuild from its parts (the native shim's copy is generated from it). */
export const otherBuildFields = (
  pid: number | string,
  daemon: string,
  client: string,
  restart: string,
): Pick<WireError, 'message' | 'fix'> => ({
  message: `the running daemon (pid ${pid}) is keybroker ${daemon}, this is ${client}`,
  fix: `run: ${restart}`,
});

/**
 * The daemon identity in a reply (`daemon`, or a ping reply's own fields), when it has the shape
 * the daemon sends: a version and a build of at most 64 of [A-Za-z0-9_.+-] (printed in a one-line
 * warning), a pid that is a positive integer, `startedBy` a string. Anything else is ignored, by
 * the Node shim and the native one alike.
 */
export function daemonIdentity(
  x: unknown,
): (BuildIdentity & { pid: number; startedBy?: string | undefined }) | undefined {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return undefined;
  const d = x as Record<string, unknown>;
  const word = (v: unknown): v is string => typeof v === 'string' && /^[\w.+-]{1,64}$/.test(v);
  if (!word(d.version) || !(d.build === undefined || word(d.build))) return undefined;
  if (typeof d.pid !== 'number' || !Number.isInteger(d.pid) || d.pid <= 0 || d.pid >= 2 ** 31) return undefined;
  if (!(d.startedBy === undefined || typeof d.startedBy === 'string')) return undefined;
  return { version: d.version, build: d.build, pid: d.pid, startedBy: d.startedBy };
}
