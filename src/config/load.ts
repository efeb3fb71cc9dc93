// Finding, reading and validating the config file. Every problem is reported at once, each with
// its YAML path (and line), so one `keybroker config check` shows everything to fix.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isNode, isScalar, type Document } from 'yaml';
import type { z } from 'zod';
import type { Adapter } from '../adapter.js';
import { adapterConfigKeys, adapterFor } from '../../adapters/registry.js';
import { BrokerError } from '../errors.js';
import { buildConfigSchema, DEFAULTS, PROFILE_KEYS, type RawConfig, type RepeatDetection } from './schema.js';
import { parseSourceUri } from './source-uri.js';

export const MAX_CONFIG_BYTES = 1024 * 1024;

export interface ConfigProblem {
  /** Dotted YAML path, e.g. profiles.work.ttl; empty for the whole file. */
  path: string;
  line?: number;
  message: string;
}

export class ConfigError extends BrokerError {
  readonly problems: ConfigProblem[];
  readonly file: string;
  /** There is no file at all (a first run), as opposed to one that is wrong. */
  readonly missing: boolean;

  constructor(file: string, problems: ConfigProblem[], options: { missing?: boolean } = {}) {
    super('CONFIG_INVALID', formatProblems(file, problems));
    this.file = file;
    this.problems = problems;
    this.missing = options.missing ?? false;
  }
}

export function formatProblems(file: string, problems: ConfigProblem[]): string {
  return problems
    .map((p) => `${file}${p.line ? `:${p.line}` : ''}: ${p.path ? `${p.path}: ` : ''}${p.message}`)
    .join('\n');
}

export interface ResolvedProfile {
  name: string;
  source: string;
  scheme: string;
  ttlMs: number;
  maxStaleMs: number;
  timeoutMs: number;
  repeatDetection: RepeatDetection;
  /** The top-level settings block of this profile's adapter (`vault:` …). */
  settings: Record<string, unknown> | undefined;
  /** The profile's own adapter block, overriding settings. */
  overrides: Record<string, unknown> | undefined;
  /** Equal fingerprints mean a reload leaves the profile (and its cache) alone. */
  fingerprint: string;
}

export interface LoadedConfig {
  file: string;
  profiles: Map<string, ResolvedProfile>;
}

export interface ConfigPathInput {
  flag?: string | undefined;
  env?: NodeJS.ProcessEnv;
  home?: string;
}

export interface ResolvedConfigPath {
  path: string;
  from: '--config' | 'KEYBROKER_CONFIG' | 'default';
}

export function resolveConfigPath(input: ConfigPathInput = {}): ResolvedConfigPath {
  const env = input.env ?? process.env;
  const home = input.home ?? os.homedir();
  if (input.flag) return { path: path.resolve(input.flag), from: '--config' };
  if (env.KEYBROKER_CONFIG) return { path: path.resolve(env.KEYBROKER_CONFIG), from: 'KEYBROKER_CONFIG' };
  const xdg = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(home, '.config');
  return { path: path.join(xdg, 'keybroker', 'config.yaml'), from: 'default' };
}

/**
 * Read the config file. It can run commands (exec: sources), so it must belong to you and be
 * writable by nobody else.
 */
export async function readConfigFile(file: string): Promise<string> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      code === 'ENOENT' ? `no config file here — create one (keybroker daemon writes a starter at the default path) or pass --config FILE` :
      code === 'EACCES' ? 'cannot read the config file: permission denied' :
      `cannot read the config file (${code ?? 'error'})`;
    throw new ConfigError(file, [{ path: '', message }], { missing: code === 'ENOENT' });
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new ConfigError(file, [{ path: '', message: 'not a regular file' }]);
    const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
    if (uid !== undefined && st.uid !== uid) {
      throw new ConfigError(file, [{ path: '', message: `owned by uid ${st.uid}, not by you (uid ${uid}); the config can run commands, so keybroker reads only your own — copy it and chown it` }]);
    }
    if ((st.mode & 0o022) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new ConfigError(file, [{ path: '', message: `writable by group or others (mode ${mode}); the config can run commands — run: chmod 600 ${file}` }]);
    }
    if (st.size > MAX_CONFIG_BYTES) throw new ConfigError(file, [{ path: '', message: `${st.size} bytes is too large for a config file (at most ${MAX_CONFIG_BYTES})` }]);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/** Parse and validate the text of a config file (offline, synchronous: no adapter is loaded). */
export function parseConfigText(text: string, file: string): RawConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: '', line: e.linePos?.[0]?.line, message: `YAML: ${yamlMessage(e.message)}` })),
    );
  }
  const data: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {};
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ConfigError(file, [{ path: '', message: 'the config must be a YAML mapping with a profiles: key' }]);
  }
  const result = buildConfigSchema().safeParse(data);
  if (!result.success) {
    throw new ConfigError(file, result.error.issues.map((issue) => toProblem(issue, doc, lineCounter, data)));
  }
  return result.data;
}

/**
 * Apply defaults and validate every source URI with its adapter (offline). `adapterFor` hands out
 * adapter instances; the daemon passes its pool, `config check` a throwaway one.
 */
export async function resolveProfiles(
  raw: RawConfig,
  file: string,
  getAdapter: (scheme: string, settings: Record<string, unknown> | undefined) => Promise<Adapter>,
  lineOf?: (yamlPath: string[]) => number | undefined,
): Promise<LoadedConfig> {
  const problems: ConfigProblem[] = [];
  const profiles = new Map<string, ResolvedProfile>();
  const d = raw.defaults ?? {};
  for (const [name, p] of Object.entries(raw.profiles)) {
    const problemAt = (key: string, message: string): void => {
      const yamlPath = ['profiles', name, key];
      problems.push({ path: yamlPath.join('.'), line: lineOf?.(yamlPath), message });
    };
    const parsed = parseSourceUri(p.source);
    if (!parsed.ok) {
      problemAt('source', parsed.reason);
      continue;
    }
    const entry = adapterFor(parsed.scheme)!;
    const rawRecord = raw as Record<string, unknown>;
    const profileRecord = p as Record<string, unknown>;
    const settings = entry.configKey ? (rawRecord[entry.configKey] as Record<string, unknown> | undefined) : undefined;
    const overrides = entry.configKey ? (profileRecord[entry.configKey] as Record<string, unknown> | undefined) : undefined;
    for (const key of Object.keys(profileRecord)) {
      if (!(PROFILE_KEYS as readonly string[]).includes(key) && key !== entry.configKey) {
        problemAt(key, `a ${key}: block does not apply to a ${parsed.scheme}: source`);
      }
    }
    try {
      const adapter = await getAdapter(parsed.scheme, settings);
      await adapter.parse(p.source, { overrides, profile: name });
    } catch (err) {
      problemAt('source', err instanceof BrokerError ? err.message : `the ${parsed.scheme} adapter could not check this source`);
      continue;
    }
    const ttlMs = p.ttl ?? d.ttl ?? DEFAULTS.ttlMs;
    const timeoutMs = p.timeout ?? d.timeout ?? DEFAULTS.timeoutMs;
    const resolved = {
      name,
      source: p.source,
      scheme: parsed.scheme,
      ttlMs,
      maxStaleMs: p.maxStale ?? d.maxStale ?? DEFAULTS.maxStaleMs,
      timeoutMs,
      repeatDetection: p.repeatDetection ?? d.repeatDetection ?? DEFAULTS.repeatDetection,
      settings,
      overrides,
    };
    profiles.set(name, { ...resolved, fingerprint: JSON.stringify(resolved) });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return { file, profiles };
}

/** Read, parse and resolve a config file in one go. */
export async function loadConfig(
  file: string,
  getAdapter: (scheme: string, settings: Record<string, unknown> | undefined) => Promise<Adapter>,
): Promise<LoadedConfig> {
  const text = await readConfigFile(file);
  const raw = parseConfigText(text, file);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter });
  return resolveProfiles(raw, file, getAdapter, (p) => lineOfPath(doc, lineCounter, p));
}

function yamlMessage(message: string): string {
  const first = message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  // The usual cause: an unquoted value containing ": ", such as a command with a message in it.
  return first.includes('Nested mappings are not allowed in compact mappings') ? `${first} (quote a value that contains ": ")` : first;
}

/** The line of the deepest key on `yamlPath` that exists in the document (keys, not values). */
function lineOfPath(doc: Document, lineCounter: LineCounter, yamlPath: ReadonlyArray<PropertyKey>): number | undefined {
  let node: unknown = doc.contents;
  let line: number | undefined = isNode(node) && node.range ? lineCounter.linePos(node.range[0]).line : undefined;
  for (const segment of yamlPath) {
    if (!isMap(node)) break;
    const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(segment));
    if (!pair) break;
    if (isNode(pair.key) && pair.key.range) line = lineCounter.linePos(pair.key.range[0]).line;
    node = pair.value;
  }
  return line;
}

function toProblem(issue: z.core.$ZodIssue, doc: Document, lineCounter: LineCounter, data: object): ConfigProblem {
  const issuePath = issue.path.map((k) => (typeof k === 'symbol' ? String(k) : k));
  let message = issue.message;
  let at = issuePath;
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(issuePath);
    message = issue.keys
      .map((k) => {
        const guess = closest(k, known);
        return `unknown key "${k}"${guess ? ` (did you mean "${guess}"?)` : ''}`;
      })
      .join('; ');
    if (known.length > 0) message += ` — known keys: ${known.join(', ')}`;
    if (issue.keys.length === 1) at = [...issuePath, issue.keys[0]!];
  } else if (issue.code === 'invalid_key') {
    message = `"${String(issuePath.at(-1))}" is not a valid profile name: use letters, digits, ".", "_" and "-"`;
  } else if (issue.code === 'invalid_type' && valueAt(data, issuePath) === undefined) {
    message = `is required: ${message.replace(/^Invalid input: /, '')}`;
  } else {
    message = message.replace(/^Invalid input: /, '');
  }
  return { path: at.join('.'), line: lineOfPath(doc, lineCounter, at), message };
}

function valueAt(data: object, p: ReadonlyArray<PropertyKey>): unknown {
  let cur: unknown = data;
  for (const k of p) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

function knownKeysAt(p: ReadonlyArray<PropertyKey>): string[] {
  const blocks = adapterConfigKeys();
  if (p.length === 0) return ['defaults', 'profiles', ...blocks];
  if (p.length === 1 && p[0] === 'defaults') return ['ttl', 'maxStale', 'timeout', 'repeatDetection'];
  if (p.length === 2 && p[0] === 'profiles') return [...PROFILE_KEYS, ...blocks];
  return [];
}

/** The known key a typo most likely meant (edit distance ≤ 2, ignoring case). */
export function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
