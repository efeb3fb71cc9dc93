// Config parsing and validation: every problem with its YAML path and line, defaults, the
// ownership and permission rules, and no secret echoed back.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { adapterFor } from '../../adapters/registry.js';
import { AdapterPool } from '../../src/adapter-pool.js';
import { formatDuration, parseDuration } from '../../src/duration.js';
import { ConfigError, loadConfig, parseConfigText, readConfigFile, resolveConfigPath } from '../../src/config/load.js';
import { STARTER_CONFIG, starterConfig, writeStarterConfig, type StarterSource } from '../../src/config/starter.js';
import { createLogger } from '../../src/log.js';
import { privateTempDir } from '../helpers/daemon.js';

const dir = privateTempDir('kb-config-');
const pool = new AdapterPool({ find: adapterFor, env: { HOME: dir }, log: createLogger({ level: 'silent' }) });
afterAll(() => pool.closeAll());

function write(name: string, text: string, mode = 0o600): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text, { mode });
  fs.chmodSync(file, mode);
  return file;
}

async function problems(text: string): Promise<string[]> {
  const file = write('c.yaml', text);
  try {
    await loadConfig(file, pool.acquire);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.line ?? '-'}: ${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

describe('durations', () => {
  it.each([
    [30, 30_000],
    ['30', 30_000],
    ['30s', 30_000],
    ['500ms', 500],
    ['5m', 300_000],
    ['1.5h', 5_400_000],
    ['1d', 86_400_000],
  ])('parses %j', (input, ms) => {
    expect(parseDuration(input)).toEqual({ ok: true, ms });
  });

  it.each(['5x', '-1s', 'soon', '', '1h30m'])('refuses %j with a reason', (input) => {
    const r = parseDuration(input);
    expect(r.ok).toBe(false);
  });

  it('refuses durations longer than a timer can wait', () => {
    expect(parseDuration('30d').ok).toBe(false);
  });

  it('formats durations for people', () => {
    expect([999, 45_000, 330_000, 3_600_000, 90_000_000].map(formatDuration)).toEqual([
      '999ms',
      '45s',
      '5m30s',
      '1h',
      '1d1h',
    ]);
  });
});

describe('config validation', () => {
  it('applies defaults, then the defaults block, then the profile', async () => {
    const file = write(
      'ok.yaml',
      `defaults:\n  ttl: 1h\n  timeout: 2s\nprofiles:\n  a:\n    source: env:A\n  b:\n    source: env:B\n    ttl: 30s\n    maxStale: 0\n    repeatDetection: always\n`,
    );
    const config = await loadConfig(file, pool.acquire);
    expect(config.profiles.get('a')).toMatchObject({
      ttlMs: 3_600_000,
      timeoutMs: 2_000,
      maxStaleMs: 3_600_000,
      repeatDetection: 'agents',
    });
    expect(config.profiles.get('b')).toMatchObject({
      ttlMs: 30_000,
      timeoutMs: 2_000,
      maxStaleMs: 0,
      repeatDetection: 'always',
    });
  });

  it('takes output: json for an exec: source, and refuses it (or an unknown format) elsewhere', async () => {
    const file = write(
      'out.yaml',
      'profiles:\n  gw:\n    source: exec:mint-token\n    output: json\n  plain:\n    source: exec:cat key\n',
    );
    const config = await loadConfig(file, pool.acquire);
    expect(config.profiles.get('gw')).toMatchObject({ output: 'json' });
    expect(config.profiles.get('plain')).toMatchObject({ output: 'text' });
    const found = await problems(
      'profiles:\n  a:\n    source: env:A\n    output: json\n  b:\n    source: exec:x\n    output: xml\n',
    );
    // One pass: the schema problem and the source-kind problem together.
    expect(found).toEqual([
      expect.stringMatching(/^4: profiles\.a\.output: output: json applies only to exec: sources/),
      expect.stringMatching(/^7: profiles\.b\.output: must be one of: text, json$/),
    ]);
    expect(await problems('profiles:\n  a:\n    source: env:A\n    output: json\n')).toEqual([
      '4: profiles.a.output: output: json applies only to exec: sources (this one is env:); remove it',
    ]);
  });

  it('reports every problem with its YAML path and line', async () => {
    const found = await problems(
      [
        'profiles:', //                      1
        '  work:', //                        2
        '    source: exec:op read x', //     3
        '    ttl: 5x', //                    4
        '    tll: 5m', //                    5
        '  home:', //                        6
        '    ttl: 1h', //                    7
        'defaultz:', //                      8
        '  ttl: 1m', //                      9
      ].join('\n'),
    );
    expect(found).toEqual(
      expect.arrayContaining([
        '4: profiles.work.ttl: "5x" is not a duration: use a number of seconds, or 30s, 5m, 1h, 1d',
        expect.stringMatching(
          /^5: profiles\.work\.tll: unknown key "tll" \(did you mean "ttl"\?\) — known keys: source, ttl, /,
        ),
        expect.stringMatching(/^6: profiles\.home\.source: is required/),
        expect.stringMatching(/^8: defaultz: unknown key "defaultz" \(did you mean "defaults"\?\)/),
      ]),
    );
    expect(found).toHaveLength(4);
  });

  it('reports YAML syntax errors with their line', async () => {
    const found = await problems('profiles:\n  a:\n    source: env:A\n   bad indent: [\n');
    expect(found[0]).toMatch(/^4: : YAML: /);
  });

  it('checks each source with its adapter, offline', async () => {
    const found = await problems(
      'profiles:\n  a:\n    source: env:1BAD\n  b:\n    source: nope:x\n  c:\n    source: file:relative\n',
    );
    expect(found).toEqual([
      expect.stringMatching(/^3: profiles\.a\.source: not a valid env source/),
      expect.stringMatching(/^5: profiles\.b\.source: unknown source kind "nope:"/),
      expect.stringMatching(/^7: profiles\.c\.source: .*absolute path/),
    ]);
  });

  it('never echoes a key pasted where a source URI belongs', async () => {
    const found = await problems('profiles:\n  a:\n    source: sk-ant-api03-PASTEDKEY\n');
    expect(found).toHaveLength(1);
    expect(found[0]).not.toContain('PASTEDKEY');
  });

  it('refuses a settings block that does not belong to the source kind', async () => {
    const found = await problems('profiles:\n  a:\n    source: env:A\n    vault: {addr: "http://x"}\n');
    expect(found).toEqual(['4: profiles.a.vault: a vault: block does not apply to a env: source']);
  });

  it('refuses profile names a shell or the protocol would trip on', async () => {
    const found = await problems('profiles:\n  "bad name":\n    source: env:A\n');
    expect(found).toEqual([expect.stringMatching(/^2: profiles\.bad name: "bad name" is not a valid profile name/)]);
  });

  it('requires a mapping with profiles', async () => {
    expect(await problems('- a\n- b\n')).toEqual([expect.stringContaining('must be a YAML mapping')]);
    expect(await problems('defaults: {}\n')).toEqual([expect.stringMatching(/profiles: is required/)]);
  });
});

describe('config file rules', () => {
  it('refuses a config writable by group or others: it can run commands', async () => {
    const file = write('open.yaml', 'profiles: {}\n', 0o664);
    const err = await readConfigFile(file).catch((e: unknown) => e as ConfigError);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    expect((err as ConfigError).missing).toBe(false);
    // The fix, with the path.
    expect((err as ConfigError).message).toContain(`chmod 600 ${file}`);
  });

  it.skipIf(process.getuid?.() !== 0)('refuses a config owned by someone else (needs root to set up)', async () => {
    const file = write('theirs.yaml', 'profiles: {}\n');
    fs.chownSync(file, 4242, 4242);
    const err = await readConfigFile(file).catch((e: unknown) => e as ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    expect((err as ConfigError).message).toContain('owned by uid 4242');
  });

  it('says what to do when the file is missing', async () => {
    const err = await readConfigFile(path.join(dir, 'missing.yaml')).catch((e: unknown) => e as ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    expect((err as ConfigError).missing).toBe(true);
    expect((err as ConfigError).message).toContain('--config');
  });

  it('finds the config by flag, then KEYBROKER_CONFIG, then XDG_CONFIG_HOME, then ~/.config', () => {
    expect(resolveConfigPath({ flag: '/a.yaml', env: { KEYBROKER_CONFIG: '/b.yaml' } })).toEqual({
      path: '/a.yaml',
      from: '--config',
    });
    expect(resolveConfigPath({ env: { KEYBROKER_CONFIG: '/b.yaml' } })).toEqual({
      path: '/b.yaml',
      from: 'KEYBROKER_CONFIG',
    });
    expect(resolveConfigPath({ env: { XDG_CONFIG_HOME: '/x' }, home: '/h' }).path).toBe('/x/keybroker/config.yaml');
    expect(resolveConfigPath({ env: {}, home: '/h' }).path).toBe('/h/.config/keybroker/config.yaml');
  });

  it('writes a starter config that is valid, private, and never overwrites', async () => {
    const file = path.join(dir, 'starter', 'keybroker', 'config.yaml');
    const asked: string[] = [];
    const choose = async (): Promise<StarterSource> => {
      asked.push('probe');
      return { kind: 'file', why: 'no D-Bus session bus' };
    };
    expect(await writeStarterConfig(file, { choose })).toEqual({ kind: 'file', why: 'no D-Bus session bus' });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, 'utf8')).toBe(STARTER_CONFIG);
    const parsed = parseConfigText(STARTER_CONFIG, file);
    expect(Object.keys(parsed.profiles)).toEqual(['default']);
    fs.writeFileSync(file, 'profiles: {}\n');
    expect(await writeStarterConfig(file, { choose })).toBeUndefined();
    expect(fs.readFileSync(file, 'utf8')).toBe('profiles: {}\n');
    // A config already there is not probed for.
    expect(asked).toEqual(['probe']);
  });

  it("where a keychain answers, the starter's default profile is keyring:default, and it loads", async () => {
    const file = path.join(dir, 'starter-keyring', 'keybroker', 'config.yaml');
    const choose = async (): Promise<StarterSource> => ({ kind: 'keyring', what: 'the login keychain' });
    expect(await writeStarterConfig(file, { choose })).toMatchObject({ kind: 'keyring' });
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toBe(starterConfig({ kind: 'keyring', what: 'the login keychain' }));
    expect(text).toContain('keybroker key set default');
    const loaded = await loadConfig(file, pool.acquire);
    expect(loaded.profiles.get('default')).toMatchObject({ scheme: 'keyring', source: 'keyring:default' });
  });
});

describe('config messages that lead to the fix', () => {
  async function configError(text: string): Promise<ConfigError> {
    const file = write('m.yaml', text);
    const err = await loadConfig(file, pool.acquire).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }

  it('reports one mis-indented line once: the first YAML error, with its line', async () => {
    const err = await configError(
      [
        'profiles:', //              1
        '  default:', //             2
        '    source: env:A', //      3
        ' work:', //                 4
        '    source: env:B', //      5
        '  other:', //               6
        '    source: env:C', //      7
        '    ttl: 5m', //            8
        '  more:', //                9
        '    source: env:D', //      10
      ].join('\n'),
    );
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatchObject({ kind: 'yaml', line: 4 });
    expect(err.message.split('\n')).toHaveLength(1);
  });

  it('reports a key indented one space too far at its own line, not the line above or below', async () => {
    // Deeper than the key above it: YAML reads it as more of that key's value.
    const under = await configError(
      'profiles:\n  work:\n    source: env:A\n     ttl: 5m\n  other:\n    source: env:B\n',
    );
    expect(under.problems).toEqual([expect.objectContaining({ kind: 'indentation', line: 4 })]);
    // The first key of a block, deeper than the next: YAML takes its column as the block's.
    const first = await configError(
      'profiles:\n  work:\n    source: env:A\n  other:\n     source: env:B\n    ttl: 5m\n',
    );
    expect(first.problems).toEqual([expect.objectContaining({ kind: 'indentation', line: 5 })]);
    // A key one space short of the key above it is the one at fault, and is reported there.
    const short = await configError('profiles:\n  work:\n    source: env:A\n   ttl: 5m\n');
    expect(short.problems).toEqual([expect.objectContaining({ line: 4 })]);
  });

  it('says the likely indentation when source: sits at the level of the profile names', async () => {
    const err = await configError(
      'profiles:\n  work:\n  source: exec:op read op://Work/Anthropic/credential\n  ttl: 1h\n',
    );
    expect(err.problems).toEqual([expect.objectContaining({ kind: 'indentation', path: 'profiles.source', line: 3 })]);
    expect(err.problems[0]!.message).toContain('"work"');
  });

  it('reports schema and source problems in one pass', async () => {
    const err = await configError(
      [
        'profiles:', //                                       1
        '  work:', //                                         2
        '    source: 1password://Work/Anthropic/credential', // 3
        '    ttl: 5x', //                                     4
        '  bad:', //                                          5
        '    source: vault:/secret/x', //                     6
        '  "bad name":', //                                   7
        '    source: env:A', //                               8
      ].join('\n'),
    );
    expect(err.problems.map((p) => [p.line, p.path, p.kind])).toEqual([
      [3, 'profiles.work.source', 'source'],
      [4, 'profiles.work.ttl', 'value'],
      [6, 'profiles.bad.source', 'source'],
      [7, 'profiles.bad name', 'value'],
    ]);
  });

  it.each([
    ['1password://Work/Anthropic/credential', 'op'],
    ['onepassword://Work/Anthropic/credential', 'op'],
    ['OP://Work/Anthropic/credential', 'op'],
    ['hashicorp://secret/anthropic#api_key', 'vault'],
    ['vualt://secret/anthropic#api_key', 'vault'],
    ['secretsmanager://anthropic#api_key', 'aws-sm'],
    ['aws://anthropic#api_key', 'aws-sm'],
    ['aws-creds://default', 'aws-credentials'],
    ['environment:ANTHROPIC_API_KEY', 'env'],
    ['cmd:op read x', 'exec'],
    ['fiel:~/key', 'file'],
  ])('suggests the source kind %s most likely meant', async (source, suggestion) => {
    const err = await configError(`profiles:\n  a:\n    source: ${JSON.stringify(source)}\n`);
    expect(err.problems).toEqual([
      expect.objectContaining({ kind: 'source', path: 'profiles.a.source', line: 3, suggestion }),
    ]);
  });

  it('suggests nothing for a kind that resembles none', async () => {
    const err = await configError('profiles:\n  a:\n    source: "ab:x"\n');
    expect(err.problems[0]!.suggestion).toBeUndefined();
  });

  it("warns (without failing) that a timeout of 10 s or more shows Claude Code's slow-helper notice", async () => {
    const file = write(
      'slow.yaml',
      'defaults:\n  timeout: 12s\nprofiles:\n  a:\n    source: env:A\n    timeout: 15s\n  b:\n    source: env:B\n  c:\n    source: env:C\n    timeout: 9s\n',
    );
    const config = await loadConfig(file, pool.acquire);
    expect(config.warnings.map((w) => [w.kind, w.path, w.line])).toEqual([
      ['slow-timeout', 'profiles.a.timeout', 6],
      ['slow-timeout', 'defaults.timeout', 2],
    ]);
  });

  it('caps a profile timeout, so clients can wait for the daemon to enforce it', async () => {
    const err = await configError('profiles:\n  a:\n    source: env:A\n    timeout: 10m\n');
    expect(err.problems).toEqual([expect.objectContaining({ path: 'profiles.a.timeout', line: 4, kind: 'value' })]);
  });

  it('takes multiline: true or false only', async () => {
    const file = write('ml.yaml', 'profiles:\n  pem:\n    source: file:/k.pem\n    multiline: true\n');
    expect((await loadConfig(file, pool.acquire)).profiles.get('pem')?.multiline).toBe(true);
    const err = await configError('profiles:\n  pem:\n    source: file:/k.pem\n    multiline: yes please\n');
    expect(err.problems).toEqual([expect.objectContaining({ path: 'profiles.pem.multiline', line: 4 })]);
  });
});
