// The test files that drive real external programs whose behaviour does not depend on which Node
// runs the suite: the agent CLIs (Claude Code, Codex), Claude Code's sandbox (bubblewrap, socat),
// the keychain (gnome-keyring on a private session bus), the package as npm packs and installs it,
// the C compiler as the native build meets it, and the C fuzz corpus under the sanitizers. .ci/run
// runs them once, in the run on the machine's own Node, and sets KEYBROKER_TEST_EXTERNAL=0 for the
// runs on Node 22 and 24, where vitest.config.ts leaves these files out. Everything else runs on
// all three.
//
// A new test file that drives such a program is named real-<program>.test.ts (or matches a glob
// here already); otherwise add its glob below, and say why.

/** Globs, from the repository root, of the test files that run once. */
export const EXTERNAL_TESTS: readonly string[] = [
  // The real agent CLIs, installed on first use: real-claude-code, real-codex, …
  'test/**/real-*.test.ts',
  // The real Claude Code with its own sandbox (bubblewrap and socat).
  'test/**/claude-sandbox*.test.ts',
  // The keychain: a real gnome-keyring, and the first run that writes to it.
  'test/adapters/keyring*.test.ts',
  'test/daemon/first-run-keychain.test.ts',
  // npm pack, then npm install -g and npx of the tarball as another user, from the registry.
  'test/install/package.test.ts',
  // The C compiler under scripts/build-native.mjs: missing, failing, warning, refusing the hardening
  // flags, and an install's degradations. What depends on the Node that builds (the shim handing
  // over to it, the addon loading in it) is in test/shim/build-native.test.ts, on every Node.
  'test/shim/build-native-compiler.test.ts',
  // The native shim's reply reader under AddressSanitizer and UndefinedBehaviorSanitizer: C only.
  'test/fuzz/**/*.test.ts',
];

/** The environment variable that leaves them out when it is "0". */
export const EXTERNAL_ENV = 'KEYBROKER_TEST_EXTERNAL';

/** Whether this run leaves the external-program tests out. */
export function externalTestsOff(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[EXTERNAL_ENV] === '0';
}
