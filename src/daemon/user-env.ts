// `npm start` runs the daemon with npm's environment: a PATH that starts with a node_modules/.bin
// directory for every ancestor of the checkout (300 characters of it show up in exec: errors),
// npm's node-gyp-bin and node's own directory, plus dozens of npm_* variables that would also
// steer an `npx` or `npm` run by an exec: source. The daemon's children should see the user's
// environment, so a daemon started by an npm script takes npm's additions back out.
import path from 'node:path';

/** Was this process started by an npm script (npm start, npm run …)? */
export function startedByNpm(env: NodeJS.ProcessEnv): boolean {
  return env.npm_lifecycle_event !== undefined && env.npm_execpath !== undefined;
}

function isNpmEntry(dir: string): boolean {
  const d = dir.replace(/\/+$/, '');
  return (
    d.endsWith(`${path.sep}node_modules${path.sep}.bin`) ||
    d === 'node_modules/.bin' ||
    d.endsWith('/@npmcli/run-script/lib/node-gyp-bin')
  );
}

/**
 * PATH without what npm put in front of it. npm prepends one block: node's own directory and the
 * node_modules/.bin dirs and node-gyp-bin. When PATH starts with such a block it is dropped whole
 * (with at most one copy of node's directory: the user's PATH may start with it too, as nvm's
 * does), so the user's own order is back. Otherwise only the npm entries are dropped.
 */
export function withoutNpmPath(pathVar: string, nodeDir: string): string {
  const entries = pathVar.split(path.delimiter);
  if (!entries.some(isNpmEntry)) return pathVar;
  let end = 0;
  let sawNodeDir = false;
  let sawNpm = false;
  for (; end < entries.length; end++) {
    const e = entries[end]!;
    if (isNpmEntry(e)) sawNpm = true;
    else if (!sawNodeDir && e.replace(/\/+$/, '') === nodeDir) sawNodeDir = true;
    else break;
  }
  const rest = entries.slice(sawNpm ? end : 0);
  return rest.filter((e) => !isNpmEntry(e)).join(path.delimiter);
}

/** The environment the user had before npm ran the script (variables npm added are removed). */
export function userEnvironment(env: NodeJS.ProcessEnv, execPath: string = process.execPath): NodeJS.ProcessEnv {
  if (!startedByNpm(env)) return env;
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith('npm_') || key === 'INIT_CWD' || key === 'NODE' || key === 'COLOR') continue;
    out[key] = value;
  }
  if (env.PATH !== undefined) out.PATH = withoutNpmPath(env.PATH, path.dirname(execPath));
  return out;
}
