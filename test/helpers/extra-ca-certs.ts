// Node 20 reads and parses the certificates NODE_EXTRA_CA_CERTS names as it starts (Node 22 and 24
// only when a process first makes a TLS connection). Where it names the system's whole bundle, as
// on CI's machine, that is ~40 ms of CPU for every Node process, and a run of the suite starts
// ~1,100: daemons, CLI calls and shims whose TLS connections go only to fake servers, with CAs of
// their own. So a test worker (test/setup/extra-ca-certs.ts) keeps the variable under another name:
// the worker itself read it when it started, and so keeps the certificates for its own connections
// (the opt-in live 1Password test), but what it spawns goes without, except where a test reaches
// the npm registry through a proxy that may need them: those spread registryEnv() back in.

/** Where the worker keeps NODE_EXTRA_CA_CERTS. (baseEnv drops KEYBROKER_* from daemons' and shims' environments.) */
const KEPT = 'KEYBROKER_TEST_NODE_EXTRA_CA_CERTS';

/** Moves NODE_EXTRA_CA_CERTS out of the way of what this process spawns from now on. */
export function keepExtraCaCertsAside(env: NodeJS.ProcessEnv = process.env): void {
  if (env.NODE_EXTRA_CA_CERTS === undefined) return;
  env[KEPT] = env.NODE_EXTRA_CA_CERTS;
  delete env.NODE_EXTRA_CA_CERTS;
}

/** NODE_EXTRA_CA_CERTS as the machine had it, for a process that reaches the npm registry. */
export function registryEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return env[KEPT] === undefined ? {} : { NODE_EXTRA_CA_CERTS: env[KEPT] };
}
