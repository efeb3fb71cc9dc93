// Node options the daemon runs with. V8 reads them only when the process starts (set later with
// v8.setFlagsFromString they do nothing), so whoever starts a daemon passes them: autostart and
// the service units on the node command line, and a daemon started by hand (`keybroker daemon`)
// execs itself with them where Node has process.execve (Node 22.15+, 24). Built-ins only:
// autostart, in the shim, imports this.
//
// --max-semi-space-size=1: a daemon's live set is tiny, and V8's young generation would take
// megabytes it never gives back. With it the daemon's idle RSS on Node 24 is ~2 MiB lower (64.2 ->
// 62.1 MiB in `npm run bench`), throughput within the bench's noise (docs/performance.md).
//
// Not here: --disable-sigusr1 (Node 22.14+). It would close the few milliseconds before the
// daemon's own SIGUSR1 listener exists, but Node then drops the signal before any listener sees
// it, so the daemon could no longer log that someone sent one; the listener covers every version.

/** The options, valid on every Node keybroker supports (a service unit may outlive an upgrade). */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/** Set in the environment of a daemon that execs itself with the flags, so it does so once. */
const REEXEC_MARK = 'KEYBROKER_DAEMON_REEXEC';

/**
 * The wanted options this process was not started with. An option the user gave with another
 * value (on the command line or in NODE_OPTIONS) counts as given: theirs wins.
 */
export function missingNodeFlags(
  wanted: readonly string[],
  execArgv: readonly string[],
  nodeOptions: string | undefined,
): string[] {
  const given = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)];
  return wanted.filter((flag) => {
    const name = flag.split('=')[0]!;
    return !given.some((g) => g === name || g.startsWith(`${name}=`));
  });
}

type Execve = (file: string, args: string[], env: Record<string, string>) => never;

/**
 * Become this same daemon started with the options it lacks: same pid (a service manager and the
 * terminal see no change), before it has done anything. Node's execve closes every descriptor
 * but stdio, so a daemon handed a listening socket (`inheritsFds`: systemd socket activation,
 * whose unit passes the options anyway) stays as it is. Returns when there is nothing to add,
 * when this Node cannot exec (Node 20), or when the exec failed — the daemon then runs without
 * them, as it did before they existed.
 */
export function reexecWithDaemonNodeFlags(inheritsFds: boolean): void {
  const already = process.env[REEXEC_MARK] === '1';
  delete process.env[REEXEC_MARK];
  const execve = (process as { execve?: unknown }).execve;
  if (already || inheritsFds || typeof execve !== 'function') return;
  const missing = missingNodeFlags(DAEMON_NODE_FLAGS, process.execArgv, process.env.NODE_OPTIONS);
  if (missing.length === 0) return;
  const env: Record<string, string> = { [REEXEC_MARK]: '1' };
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value;
  try {
    (execve as Execve)(
      process.execPath,
      [process.execPath, ...process.execArgv, ...missing, ...process.argv.slice(1)],
      env,
    );
  } catch {
    // Refused (the permission model) or failed: run as we are.
  }
}
