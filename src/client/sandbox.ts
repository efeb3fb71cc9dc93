// Knowing that this command runs inside an agent's sandbox, which keeps it from the daemon by
// design. Measured with Claude Code 2.1.332 on Linux (bubblewrap, socat and a seccomp filter): a
// sandboxed Bash-tool command cannot create a Unix socket — connect() fails with EPERM — and has
// SANDBOX_RUNTIME=1 in its environment, which a command outside the sandbox does not. The marker
// is only a hint about where we are, never a security decision: whoever runs the command can set
// or unset it. What keeps the key out of reach is the kernel's refusal, not this module.
// Built-ins only: the shim imports this, and the native shim's copies are generated from it.
import type { WireError } from '../protocol/messages.js';

/** What says "inside a sandbox", as data (scripts/native-header.mjs generates the C copies). */
export const SANDBOX = {
  /** Set in every sandboxed command's environment by Claude Code's sandbox runtime. */
  env: 'SANDBOX_RUNTIME',
  envValue: '1',
  /** What connect() (or socket()) fails with when a seccomp filter refuses a Unix socket. */
  errno: 'EPERM',
} as const;

/** The environment says this command runs in Claude Code's sandbox. */
export function inSandbox(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[SANDBOX.env] === SANDBOX.envValue;
}

/** Why we know: the refused connect, or the environment's marker. */
export const SANDBOX_EVIDENCE = {
  errno: `connecting to the daemon was refused: ${SANDBOX.errno}`,
  env: `${SANDBOX.env}=${SANDBOX.envValue}`,
} as const;

/**
 * The one line a client says inside a sandbox. No fix: nothing is broken, and an agent told to
 * "run it outside the sandbox" would only look for a way out of it.
 */
export function sandboxedError(evidence: string): WireError {
  return {
    code: 'SANDBOXED',
    message: `a sandbox keeps keybroker's keys from this command, by design (${evidence}); the agent's own key command (Claude Code's apiKeyHelper, Codex's auth command) runs outside the sandbox and still gets them`,
    transient: false,
  };
}

/**
 * A connect that failed (errno name): the sandbox's error when the kernel refused it (EPERM), or
 * when the marker says we are in a sandbox; undefined otherwise (no daemon there).
 */
export function sandboxedConnect(
  errno: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): WireError | undefined {
  if (errno === SANDBOX.errno) return sandboxedError(SANDBOX_EVIDENCE.errno);
  if (inSandbox(env)) return sandboxedError(SANDBOX_EVIDENCE.env);
  return undefined;
}
