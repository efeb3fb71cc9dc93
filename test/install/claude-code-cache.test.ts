// test/helpers/pinned-cli.ts, which installs the Claude Code CLI on first use for the tests that
// drive it, against a fake npm registry: one install however many ask at once, a lock left by a
// process that is gone is taken over, and an unreachable or silent registry fails the caller
// (never a skip), within the time limit, leaving nothing half-installed behind.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { FakeNpmRegistry } from '../fakes/fake-npm-registry.js';
import { CLAUDE_CODE, claudeCode, type PinnedCliOptions } from '../helpers/pinned-cli.js';
import { privateTempDir } from '../helpers/daemon.js';

const VERSION = '9.8.7';
let dir: string;
let cacheDir: string;
let registry: FakeNpmRegistry | undefined;

beforeEach(() => {
  dir = privateTempDir('kb-claude-cache-');
  cacheDir = path.join(dir, 'claude-code');
});
afterEach(async () => {
  await registry?.close();
  registry = undefined;
});

/** npm pointed at `url`, with a cache of its own so nothing comes from an earlier run. */
function options(url: string, extra: Partial<PinnedCliOptions> = {}): PinnedCliOptions {
  return {
    version: VERSION,
    cacheDir,
    env: {
      npm_config_registry: `${url}/`,
      npm_config_cache: path.join(dir, 'npm-cache'),
      npm_config_fetch_retries: '0',
    },
    timeoutMs: 60_000,
    ...extra,
  };
}

/** What is left in the cache directory besides finished installs: locks, partial directories. */
const leftovers = (): string[] => fs.readdirSync(cacheDir).filter((f) => f !== VERSION);

it('installs once however many ask at once; each gets a claude that runs, and later calls need no registry', async () => {
  registry = await FakeNpmRegistry.start({ name: CLAUDE_CODE.package, version: VERSION });
  const bins = await Promise.all([1, 2, 3].map(() => claudeCode(options(registry!.url))));
  expect(new Set(bins).size).toBe(1);
  expect(registry.tarballRequests).toBe(1);
  expect(spawnSync(bins[0]!, ['--version'], { encoding: 'utf8' }).stdout).toBe(`${VERSION} (Claude Code)\n`);
  expect(leftovers()).toEqual([]);
  await registry.close();
  registry = undefined;
  expect(await claudeCode(options('http://127.0.0.1:9'))).toBe(bins[0]);
}, 120_000);

it('takes over a lock whose process is gone', async () => {
  registry = await FakeNpmRegistry.start({ name: CLAUDE_CODE.package, version: VERSION });
  const gone = spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim();
  fs.mkdirSync(cacheDir, { recursive: true });
  fs.writeFileSync(path.join(cacheDir, `${VERSION}.lock`), gone);
  const bin = await claudeCode(options(registry.url));
  expect(fs.existsSync(bin)).toBe(true);
  expect(leftovers()).toEqual([]);
}, 120_000);

it('fails with INSTALL_FAILED when the registry is unreachable, and leaves nothing behind', async () => {
  await expect(claudeCode(options('http://127.0.0.1:9'))).rejects.toMatchObject({ code: 'INSTALL_FAILED' });
  expect(leftovers()).toEqual([]);
}, 120_000);

it('stops an install that outlasts its time limit: INSTALL_TIMEOUT', async () => {
  registry = await FakeNpmRegistry.start({ name: CLAUDE_CODE.package, version: VERSION, hang: true });
  const started = Date.now();
  await expect(claudeCode(options(registry.url, { timeoutMs: 3_000 }))).rejects.toMatchObject({
    code: 'INSTALL_TIMEOUT',
  });
  expect(Date.now() - started).toBeLessThan(20_000);
  expect(leftovers()).toEqual([]);
}, 60_000);
