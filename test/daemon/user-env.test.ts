// A daemon started by `npm start` gives its exec: sources the user's PATH and environment, not npm's.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { userEnvironment, withoutNpmPath } from '../../src/daemon/user-env.js';
import { startDaemon } from '../helpers/daemon.js';

const USER_PATH = '/home/ada/bin:/usr/local/bin:/usr/bin:/bin';
const NODE_DIR = path.dirname(process.execPath);
// As npm 10 builds it: node's directory, then a node_modules/.bin per ancestor, then node-gyp-bin.
const NPM_PATH = [
  NODE_DIR,
  '/home/ada/code/keybroker/node_modules/.bin',
  '/home/ada/code/node_modules/.bin',
  '/home/ada/node_modules/.bin',
  '/home/node_modules/.bin',
  '/node_modules/.bin',
  '/usr/lib/node_modules/npm/node_modules/@npmcli/run-script/lib/node-gyp-bin',
].join(':');

describe('withoutNpmPath', () => {
  it("drops npm's prepended block whole, restoring the user's order", () => {
    expect(withoutNpmPath(`${NPM_PATH}:${USER_PATH}`, NODE_DIR)).toBe(USER_PATH);
  });

  it("keeps node's directory when the user's own PATH starts with it (nvm)", () => {
    expect(withoutNpmPath(`${NPM_PATH}:${NODE_DIR}:${USER_PATH}`, NODE_DIR)).toBe(`${NODE_DIR}:${USER_PATH}`);
  });

  it('leaves a PATH without npm entries alone', () => {
    expect(withoutNpmPath(USER_PATH, NODE_DIR)).toBe(USER_PATH);
  });

  it('drops only the npm entries when the block is mixed with others', () => {
    expect(withoutNpmPath(`/opt/x/bin:/a/node_modules/.bin:${USER_PATH}`, NODE_DIR)).toBe(`/opt/x/bin:${USER_PATH}`);
  });

  it('changes nothing when npm did not start the process', () => {
    const env = { PATH: `${NPM_PATH}:${USER_PATH}`, npm_config_cache: '/x' };
    expect(userEnvironment(env)).toBe(env);
  });
});

describe('a daemon started by npm start', () => {
  it("runs exec: sources with the user's PATH and no npm_* variables", async () => {
    const d = await startDaemon({
      config: [
        'profiles:',
        '  path:',
        `    source: 'exec:printf "%s" "$PATH"'`,
        '  npm-vars:',
        `    source: 'exec:env | grep -c "^npm_" || true'`,
      ].join('\n'),
      env: {
        PATH: `${NPM_PATH}:/usr/local/bin:/usr/bin:/bin`,
        npm_lifecycle_event: 'start',
        npm_execpath: '/usr/lib/node_modules/npm/bin/npm-cli.js',
        npm_config_userconfig: '/home/ada/.npmrc',
        INIT_CWD: '/home/ada/code/keybroker',
      },
    });
    const p = await d.request({ v: 1, op: 'get', profile: 'path' });
    expect(p).toMatchObject({ ok: true, value: '/usr/local/bin:/usr/bin:/bin' });
    expect(await d.request({ v: 1, op: 'get', profile: 'npm-vars' })).toMatchObject({ ok: true, value: '0' });
  });
});
