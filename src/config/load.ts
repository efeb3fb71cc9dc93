// Finding, reading and validating the config file. Every problem is reported at once, each with
// its YAML path (and line), so one `keybroker config check` shows everything to fix.
import os from 'node:os';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isNode, isScalar, type Document } from 'yaml';
import type { z } from 'zod';
import { ENV_VAR_NAME, type Adapter, type OutputFormat } from '../adapter.js';
import { ADAPTERS, adapterConfigKeys, adapterFor } from '../../adapters/registry.js';
import { FileCheckError, readCheckedFile } from '../checked-file.js';
import { BrokerError } from '../errors.js';
import { renderError } from '../protocol/messages.js';
import { redactText } from '../secret.js';
import { resolveDirectoryRules, type DirectoryRule } from './directories.js';
import {
  checkLockedKeys,
  lockedKeysOf,
  mergeManagedConfig,
  readManagedConfigFile,
  type ConfigWarning,
  type ManagedLocation,
} from './managed.js';
import {
  buildConfigSchema,
  buildManagedConfigSchema,
  DEFAULT_KEYS,
  DEFAULTS,
  PROFILE_KEYS,
  TELEMETRY_KEYS,
  type RawConfig,
  type RawManagedConfig,
  type RawTelemetry,
  type RepeatDetection,
} from './schema.js';
import { closest } from '../did-you-mean.js';
import { formatDuration } from '../duration.js';
import { parseSourceUri } from './source-uri.js';

export const MAX_CONFIG_BYTES = 1024 * 1024;

export interface ConfigProblem {
  /** Dotted YAML path, e.g. profiles.work.ttl; empty for the whole file. */
  path: string;
  line?: number;
  message: string;
  kind?: ConfigProblemKind;
  /** For a near miss: what it most likely should say (a key, a source kind). */
  suggestion?: string;
}

/**
 * The longest config error line Claude Code shows: the shims print `keybroker: MESSAGE — FIX` as
 * one line of at most this many characters (Claude Code shows a helper's stderr whole, on one
 * line). People get every problem, one per line, from `config check`, doctor and the daemon log.
 */
export const MAX_CONFIG_ERROR_LINE = 300;
const CONFIG_CHECK_FIX = 'run: keybroker config check';
/** What the shims put around the message: `keybroker: ` before it, ` — FIX` after it. */
const SHIM_FRAME = 'keybroker: '.length + ' — '.length + CONFIG_CHECK_FIX.length;

export class ConfigError extends BrokerError {
  readonly problems: ConfigProblem[];
  readonly file: string;
  /** There is no file at all (a first run), as opposed to one that is wrong. */
  readonly missing: boolean;

  constructor(file: string, problems: ConfigProblem[], options: { missing?: boolean } = {}) {
    // A problem may quote what was written (a path, a duration, a profile name): where a key was
    // pasted by mistake, that is the key, and this message goes to the daemon log and status.
    const redacted = problems.map((p) => ({ ...p, path: redactText(p.path), message: redactText(p.message) }));
    // A file that cannot be read says so itself; a file that is wrong is summed up in one short
    // line, and `config check` lists the problems.
    const unreadable = redacted.length === 1 && redacted[0]!.kind === 'file';
    super('CONFIG_INVALID', unreadable ? formatProblems(file, redacted) : summarizeProblems(file, redacted), {
      fix: unreadable ? undefined : CONFIG_CHECK_FIX,
    });
    this.file = file;
    this.problems = redacted;
    this.missing = options.missing ?? false;
  }

  /** Every problem, one per line, as `FILE:LINE: PATH: what is wrong`. */
  get report(): string {
    return formatProblems(this.file, this.problems);
  }
}

export function formatProblems(file: string, problems: ConfigProblem[]): string {
  return problems.map((p) => `${file}${p.line ? `:${p.line}` : ''}: ${problemText(p)}`).join('\n');
}

function problemText(p: ConfigProblem): string {
  return `${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/**
 * "3 problems in FILE; first: line 4: profiles.work.ttl: …", short enough that the shim's line
 * (prefix and fix included) fits MAX_CONFIG_ERROR_LINE: the first problem is cut with an
 * ellipsis, and a long path is shortened to its file name.
 */
export function summarizeProblems(file: string, problems: readonly ConfigProblem[]): string {
  const first = problems[0];
  const room = MAX_CONFIG_ERROR_LINE - SHIM_FRAME;
  const head = (where: string): string =>
    problems.length === 1 ? `1 problem in ${where}: ` : `${problems.length} problems in ${where}; first: `;
  // A first problem needs some room to say anything.
  const where = head(file).length <= room - 80 ? file : `…/${path.basename(file)}`;
  if (!first) return `${head(where)}`.replace(/[:;] (first: )?$/, '');
  const text = `${first.line ? `line ${first.line}: ` : ''}${problemText(first)}`;
  return head(where) + cut(text, room - head(where).length);
}

/** `text` cut to `max` characters (whole code points), ending in … when cut. */
function cut(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, Math.max(0, max - 1)).join('')}…`;
}

export interface ResolvedProfile {
  name: string;
  source: string;
  scheme: string;
  ttlMs: number;
  maxStaleMs: number;
  timeoutMs: number;
  repeatDetection: RepeatDetection;
  /** The value may span lines (a PEM key, a JSON document); otherwise a multi-line value is refused. */
  multiline?: boolean;
  /** How the source prints its value (`output:`); 'json' only for sources that support it. */
  output: OutputFormat;
  /** The top-level settings block of this profile's adapter (`vault:` …). */
  settings: Record<string, unknown> | undefined;
  /** The profile's own adapter block, overriding settings. */
  overrides: Record<string, unknown> | undefined;
  /** For sources that run programs: the variables other profiles read, withheld from them. */
  secretEnv?: string[];
  /** Keys of its settings block that the managed config locks, which its source URI may not override. */
  locked?: { keys: string[]; by: string };
  /** The managed config file that defines this profile (users' definitions are ignored). */
  managedBy?: string;
  /** Equal fingerprints mean a reload leaves the profile (and its cache) alone. */
  fingerprint: string;
}

export interface ManagedState {
  file: string;
  /** Why the file is not in use (untrusted, unreadable): it was ignored. */
  error?: string;
  profiles: string[];
  locked: string[];
}

export interface LoadedConfig {
  file: string;
  profiles: Map<string, ResolvedProfile>;
  /**
   * Valid but worth knowing (`config check` prints them; the daemon logs them): a slow timeout
   * (kind 'slow-timeout'), and parts of the user's config that do not apply (managed profiles,
   * locked keys; no kind).
   */
  warnings: ConfigWarning[];
  /** The `directories:` map, resolved (absolute, symlinks followed). */
  directories: DirectoryRule[];
  /** Keep the audit trail (`audit: false` turns it off). */
  audit: boolean;
  /** The `telemetry:` block as written (merged with the managed one's): export is on when present. */
  telemetry?: RawTelemetry;
  /** The managed config, when there is one (in use, or ignored with an error). */
  managed?: ManagedState;
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
  const xdg =
    env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(home, '.config');
  return { path: path.join(xdg, 'keybroker', 'config.yaml'), from: 'default' };
}

/**
 * Read the config file. It can run commands (exec: sources), so it must belong to you and be
 * writable by nobody else.
 */
export async function readConfigFile(file: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readCheckedFile(file, {
      label: 'the config file',
      maxBytes: MAX_CONFIG_BYTES,
      invalid: 'CONFIG_INVALID',
      trust: 'config',
    });
  } catch (err) {
    if (err instanceof FileCheckError) throw new ConfigError(file, [{ path: '', message: err.problem, kind: 'file' }]);
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      code === 'ENOENT'
        ? `no config file here — create one (keybroker daemon writes a starter at the default path) or pass --config FILE`
        : code === 'EACCES'
          ? 'cannot read the config file: permission denied'
          : `cannot read the config file (${code ?? 'error'})`;
    throw new ConfigError(file, [{ path: '', message, kind: 'file' }], { missing: code === 'ENOENT' });
  }
  return bytes.toString('utf8');
}

/** The kinds of problem a config can have, for tools and tests (messages are for people). */
export type ConfigProblemKind = 'file' | 'yaml' | 'indentation' | 'unknown-key' | 'value' | 'source' | 'slow-timeout';

interface ParsedText {
  doc: Document;
  lineCounter: LineCounter;
  data: Record<string, unknown>;
}

function parseYaml(text: string, file: string): ParsedText {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // One mis-indented line makes the parser report every line after it too (ten errors for one
    // mistake, joined into one long line by Claude Code): the first error is the one to fix.
    const first = doc.errors[0]!;
    const line = first.linePos?.[0]?.line;
    const deeper = line === undefined ? undefined : deeperLine(text.split(/\r?\n/), first.code, line);
    if (deeper)
      throw new ConfigError(file, [
        {
          path: '',
          line: deeper.line,
          message: `YAML: line ${deeper.line} is indented ${deeper.by} space${deeper.by === 1 ? '' : 's'} further than the keys beside it — indent each key like the others at its level (spaces, not tabs)`,
          kind: 'indentation',
        },
      ]);
    throw new ConfigError(file, [
      { path: '', line, message: `YAML: ${yamlMessage(first.message, line)}`, kind: 'yaml' },
    ]);
  }
  const data: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {};
  if (!isPlainObject(data)) {
    throw new ConfigError(file, [
      { path: '', message: 'the config must be a YAML mapping with a profiles: key', kind: 'value' },
    ]);
  }
  return { doc, lineCounter, data };
}

function checkSchema(parsed: ParsedText): { raw: RawConfig | undefined; problems: ConfigProblem[] } {
  const result = buildConfigSchema().safeParse(parsed.data);
  if (result.success) return { raw: result.data, problems: [] };
  return { raw: undefined, problems: schemaProblems(parsed, result.error.issues, false) };
}

/** The managed config's schema: its profiles are optional and it may have `locked:`. */
function checkManagedSchema(parsed: ParsedText): { raw: RawManagedConfig | undefined; problems: ConfigProblem[] } {
  const result = buildManagedConfigSchema().safeParse(parsed.data);
  if (!result.success) return { raw: undefined, problems: schemaProblems(parsed, result.error.issues, true) };
  const lineOf = (p: string[]): number | undefined => lineOfPath(parsed.doc, parsed.lineCounter, p);
  const problems = checkLockedKeys(result.data.locked ?? []).map((p) => ({
    ...p,
    line: lineOf(p.path.split('.')),
    kind: 'value' as const,
  }));
  return problems.length > 0 ? { raw: undefined, problems } : { raw: result.data, problems: [] };
}

function schemaProblems(parsed: ParsedText, issues: z.core.$ZodIssue[], managed: boolean): ConfigProblem[] {
  const misplaced = misplacedProfileKeys(parsed.data);
  const problems: ConfigProblem[] = [];
  for (const issue of issues) {
    const at = issue.path.map((k) => (typeof k === 'symbol' ? String(k) : k));
    if (at.length === 2 && at[0] === 'profiles') {
      const key = String(at[1]);
      if (misplaced.emptied.has(key)) continue; // said once, by the key that should be under it
      const indentation = misplaced.keys.get(key);
      if (indentation !== undefined) {
        if (indentation !== null)
          problems.push({
            path: `profiles.${key}`,
            line: lineOfPath(parsed.doc, parsed.lineCounter, at),
            message: indentation,
            kind: 'indentation',
          });
        continue;
      }
    }
    problems.push(toProblem(issue, parsed.doc, parsed.lineCounter, parsed.data, managed));
  }
  return problems;
}

/**
 * `source:` (or `ttl:` …) written at the level of the profile names, under a profile left empty:
 * YAML reads that as a profile named "source" and an empty profile, and zod would report both
 * as type errors. Say the likely indentation once instead. Returns the misplaced keys with their
 * message (null: covered by an earlier key's message) and the emptied profiles.
 */
function misplacedProfileKeys(data: Record<string, unknown>): {
  keys: Map<string, string | null>;
  emptied: Set<string>;
} {
  const keys = new Map<string, string | null>();
  const emptied = new Set<string>();
  const profiles = data.profiles;
  if (!isPlainObject(profiles)) return { keys, emptied };
  let owner: string | undefined;
  let said = false;
  for (const [key, value] of Object.entries(profiles)) {
    const isSetting = (PROFILE_KEYS as readonly string[]).includes(key) && !isPlainObject(value);
    if (!isSetting) {
      owner = value === null || value === undefined ? key : undefined;
      said = false;
      continue;
    }
    if (said) {
      keys.set(key, null);
      continue;
    }
    said = true;
    if (owner !== undefined) {
      emptied.add(owner);
      keys.set(
        key,
        `"${key}:" is at the level of the profile names, so profile "${owner}" above it is empty — indent "${key}:" and the lines after it that belong to "${owner}" two spaces further than "${owner}:"`,
      );
    } else {
      keys.set(
        key,
        `"${key}:" is at the level of the profile names — indent it two spaces further, under the name of the profile it belongs to`,
      );
    }
  }
  return { keys, emptied };
}

/** Parse and validate the text of a config file (offline, synchronous: no adapter is loaded). */
export function parseConfigText(text: string, file: string): RawConfig {
  const { raw, problems } = checkSchema(parseYaml(text, file));
  if (!raw) throw new ConfigError(file, problems);
  return raw;
}

/** The same for the managed config. */
export function parseManagedConfigText(text: string, file: string): RawManagedConfig {
  const { raw, problems } = checkManagedSchema(parseYaml(text, file));
  if (!raw) throw new ConfigError(file, problems);
  return raw;
}

type LineOf = (yamlPath: string[]) => number | undefined;

interface CheckedSource {
  scheme: string;
  output: OutputFormat;
  settings: Record<string, unknown> | undefined;
  overrides: Record<string, unknown> | undefined;
  locked?: { keys: string[]; by: string };
  secretEnv?: string[];
}

/** What a source is checked against beyond its own profile. */
interface SourceContext {
  /** The managed config's `locked:` keys and its file, applied to the user's profiles. */
  locks?: { keys: readonly string[]; by: string };
  /** The variables env: profiles read (their values), withheld from programs that sources run. */
  secretEnv?: readonly string[];
}

/**
 * Check every profile's source URI with its adapter (offline), on the data as written: a profile
 * whose ttl is wrong still gets its source checked, so one run reports every problem.
 */
async function checkSources(
  file: string,
  data: Record<string, unknown>,
  getAdapter: (scheme: string, settings: Record<string, unknown> | undefined) => Promise<Adapter>,
  lineOf: LineOf,
  { locks, secretEnv }: SourceContext,
): Promise<{ sources: Map<string, CheckedSource>; problems: ConfigProblem[]; warnings: ConfigWarning[] }> {
  const problems: ConfigProblem[] = [];
  const warnings: ConfigWarning[] = [];
  const sources = new Map<string, CheckedSource>();
  const profiles = isPlainObject(data.profiles) ? data.profiles : {};
  for (const [name, p] of Object.entries(profiles)) {
    if (!isPlainObject(p) || typeof p.source !== 'string' || p.source === '') continue; // the schema says why
    const source = p.source;
    const problemAt = (key: string, message: string, extra: Partial<ConfigProblem> = {}): void => {
      const yamlPath = ['profiles', name, key];
      problems.push({ path: yamlPath.join('.'), line: lineOf(yamlPath), message, kind: 'source', ...extra });
    };
    const parsed = parseSourceUri(source);
    if (!parsed.ok) {
      problemAt('source', parsed.reason, parsed.suggestion ? { suggestion: parsed.suggestion } : {});
      continue;
    }
    const entry = adapterFor(parsed.scheme)!;
    const block = (holder: Record<string, unknown>): Record<string, unknown> | undefined => {
      const value = entry.configKey ? holder[entry.configKey] : undefined;
      return isPlainObject(value) ? value : undefined;
    };
    const settings = block(data);
    const overrides = block(p);
    let fits = true;
    for (const key of Object.keys(p)) {
      if (adapterConfigKeys().includes(key) && key !== entry.configKey) {
        problemAt(key, `a ${key}: block does not apply to a ${parsed.scheme}: source`);
        fits = false;
      }
    }
    // An output: that is not text or json is the schema's to report.
    const output: OutputFormat = p.output === 'json' ? 'json' : 'text';
    if (output === 'json' && !entry.jsonOutput) {
      const kinds = Object.values(ADAPTERS)
        .filter((a) => a.jsonOutput)
        .map((a) => `${a.scheme}:`)
        .join(', ');
      problemAt('output', `output: json applies only to ${kinds} sources (this one is ${parsed.scheme}:); remove it`);
      continue;
    }
    const lockedKeys = locks && entry.configKey ? lockedKeysOf(locks.keys, entry.configKey) : [];
    const locked = lockedKeys.length > 0 ? { keys: lockedKeys, by: locks!.by } : undefined;
    const warn = (message: string): void => {
      const yamlPath = ['profiles', name, 'source'];
      warnings.push({ file, path: yamlPath.join('.'), line: lineOf(yamlPath), message: `profile ${name}: ${message}` });
    };
    // Another profile's own variable is withheld; a profile never withholds from itself.
    const withheld = entry.childEnv ? (secretEnv ?? []).filter((v) => v !== envSourceName(source)) : [];
    const extra = { ...(locked && { locked }), ...(withheld.length > 0 && { secretEnv: withheld }) };
    try {
      const adapter = await getAdapter(parsed.scheme, settings);
      await adapter.parse(source, { overrides, profile: name, output, ...extra, ...(locked && { warn }) });
    } catch (err) {
      problemAt(
        'source',
        err instanceof BrokerError ? renderError(err) : `the ${parsed.scheme} adapter could not check this source`,
      );
      continue;
    }
    if (fits) sources.set(name, { scheme: parsed.scheme, settings, overrides, output, ...extra });
  }
  return { sources, problems, warnings };
}

/** Claude Code shows "apiKeyHelper is taking a while" once a helper has run this long. */
export const CLAUDE_SLOW_HELPER_NOTICE_MS = 10_000;

function resolveProfiles(raw: RawConfig, sources: Map<string, CheckedSource>): Map<string, ResolvedProfile> {
  const profiles = new Map<string, ResolvedProfile>();
  const d = raw.defaults ?? {};
  for (const [name, p] of Object.entries(raw.profiles)) {
    const checked = sources.get(name)!;
    const resolved = {
      name,
      source: p.source,
      scheme: checked.scheme,
      ttlMs: p.ttl ?? d.ttl ?? DEFAULTS.ttlMs,
      maxStaleMs: p.maxStale ?? d.maxStale ?? DEFAULTS.maxStaleMs,
      timeoutMs: p.timeout ?? d.timeout ?? DEFAULTS.timeoutMs,
      repeatDetection: p.repeatDetection ?? d.repeatDetection ?? DEFAULTS.repeatDetection,
      multiline: p.multiline ?? false,
      output: checked.output,
      settings: checked.settings,
      overrides: checked.overrides,
      ...(checked.locked && { locked: checked.locked }),
      ...(checked.secretEnv && { secretEnv: checked.secretEnv }),
    };
    profiles.set(name, { ...resolved, fingerprint: JSON.stringify(resolved) });
  }
  return profiles;
}

/** Things that work but will surprise: a timeout long enough for Claude Code's slow-helper notice. */
function configWarnings(
  raw: RawConfig,
  file: string,
  profiles: Map<string, ResolvedProfile>,
  lineOf: LineOf,
): ConfigWarning[] {
  const warnings: ConfigWarning[] = [];
  const notice = `Claude Code shows "apiKeyHelper is taking a while" after ${formatDuration(CLAUDE_SLOW_HELPER_NOTICE_MS)}, so a first fetch that takes this long shows it (fine for a 1Password approval; otherwise lower it)`;
  const inherited: string[] = [];
  for (const p of profiles.values()) {
    if (p.timeoutMs < CLAUDE_SLOW_HELPER_NOTICE_MS) continue;
    if (raw.profiles[p.name]?.timeout !== undefined) {
      const at = ['profiles', p.name, 'timeout'];
      warnings.push({
        file,
        path: at.join('.'),
        line: lineOf(at),
        message: `${formatDuration(p.timeoutMs)}: ${notice}`,
        kind: 'slow-timeout',
      });
    } else {
      inherited.push(p.name);
    }
  }
  if (inherited.length > 0) {
    const at = ['defaults', 'timeout'];
    warnings.push({
      file,
      path: at.join('.'),
      line: lineOf(at),
      message: `${formatDuration(raw.defaults!.timeout!)} (profiles ${inherited.join(', ')}): ${notice}`,
      kind: 'slow-timeout',
    });
  }
  return warnings;
}

interface CheckedConfig {
  profiles: Map<string, ResolvedProfile>;
  directories: DirectoryRule[];
  audit: boolean;
  telemetry?: RawTelemetry;
  warnings: ConfigWarning[];
}

/**
 * Check one file's sources and directories on its data (as written, or as merged with the managed
 * config), add them to the schema's problems and throw them all at once in file order; else
 * resolve its profiles. `context.otherProfiles`: profiles defined elsewhere (the managed config's) that
 * `directories:` may name too.
 */
async function checkConfig(
  file: string,
  data: Record<string, unknown>,
  schema: { raw: RawConfig | undefined; problems: ConfigProblem[] },
  getAdapter: (scheme: string, settings: Record<string, unknown> | undefined) => Promise<Adapter>,
  lineOf: LineOf,
  home: string,
  context: SourceContext & { otherProfiles?: Iterable<string> } = {},
): Promise<CheckedConfig> {
  const otherProfiles = context.otherProfiles ?? [];
  const checked = await checkSources(file, data, getAdapter, lineOf, context);
  const problems = [...schema.problems, ...checked.problems];
  // Checked against every profile written, valid or not: a profile with a broken source is
  // reported above, and should not also make its directories look wrong. A directories: block
  // of the wrong shape is the schema's to report.
  const written = new Set([...(isPlainObject(data.profiles) ? Object.keys(data.profiles) : []), ...otherProfiles]);
  const directories = isStringRecord(data.directories)
    ? await resolveDirectoryRules(data.directories, home, written)
    : { rules: [], problems: [] };
  for (const d of directories.problems) {
    const yamlPath = ['directories', d.dir];
    problems.push({ path: yamlPath.join('.'), line: lineOf(yamlPath), message: d.message, kind: 'value' });
  }
  for (const at of telemetryProfileProblems(schema.raw?.telemetry, written)) {
    problems.push({
      path: at.join('.'),
      line: lineOf(at),
      message: `names no profile of this config: define it, or write the value here`,
      kind: 'value',
    });
  }
  if (problems.length > 0 || !schema.raw) {
    throw new ConfigError(
      file,
      problems.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity)),
    );
  }
  const profiles = resolveProfiles(schema.raw, checked.sources);
  return {
    profiles,
    directories: directories.rules,
    audit: schema.raw.audit ?? true,
    ...(schema.raw.telemetry && { telemetry: schema.raw.telemetry }),
    warnings: [...checked.warnings, ...configWarnings(schema.raw, file, profiles, lineOf)],
  };
}

export interface LoadOptions {
  /** The managed config's location (resolveManagedConfigPath), read before the user's. */
  managed?: ManagedLocation | undefined;
  /**
   * The user's config as it would be written, instead of what is at `file` now: how `init` and
   * `setup claude --adopt` check a profile before they write anything.
   */
  text?: string | undefined;
}

interface ParsedFile {
  parsed: ParsedText;
  lineOf: LineOf;
}

function parseFile(text: string, file: string): ParsedFile {
  const parsed = parseYaml(text, file);
  return { parsed, lineOf: (p) => lineOfPath(parsed.doc, parsed.lineCounter, p) };
}

/**
 * Read, parse and validate a config file in one go, with the managed config when there is one,
 * and check every source URI with its adapter (offline). `getAdapter` hands out adapter
 * instances; the daemon passes its pool, `config check` a throwaway one. Every problem of a file
 * is reported at once, in file order.
 */
export async function loadConfig(
  file: string,
  getAdapter: (scheme: string, settings: Record<string, unknown> | undefined) => Promise<Adapter>,
  home: string = os.homedir(),
  options: LoadOptions = {},
): Promise<LoadedConfig> {
  const managed = options.managed ? await readManaged(options.managed.path) : undefined;
  let text = options.text;
  try {
    text ??= await readConfigFile(file);
  } catch (err) {
    // With an organisation's profiles in place, a user needs no config of their own.
    if (!(managed?.raw && err instanceof ConfigError && err.missing)) throw err;
  }
  const user = text === undefined ? undefined : parseFile(text, file);
  const userSchema = user ? checkSchema(user.parsed) : undefined;
  if (!managed?.raw) {
    if (!user || !userSchema)
      throw new ConfigError(file, [{ path: '', message: 'no config file here', kind: 'file' }], { missing: true });
    const secretEnv = envSourceNames(user.parsed.data);
    const loaded = await checkConfig(file, user.parsed.data, userSchema, getAdapter, user.lineOf, home, { secretEnv });
    return { file, ...loaded, ...(managed ? { managed: managed.state } : {}) };
  }
  const managedProfiles = Object.keys(managed.raw.profiles);
  if (user && userSchema && !userSchema.raw) {
    // Not merged: the user's config as written, so one run still reports every problem in it.
    await checkConfig(file, user.parsed.data, userSchema, getAdapter, user.lineOf, home, {
      otherProfiles: managedProfiles,
    });
  }
  const merged = mergeManagedConfig({
    managed: managed.raw,
    managedFile: managed.state.file,
    user: userSchema?.raw,
    userFile: file,
    userLineOf: user?.lineOf,
  });
  // The directory map is merged into the user's part (managed entries as its base), where it may
  // name managed profiles as well as the user's own; the managed part resolves profiles only.
  const managedPart: RawConfig = { ...merged.managed, directories: undefined };
  const secretEnv = envSourceNames(managedPart, merged.user);
  const fromManaged = await checkConfig(
    managed.state.file,
    managedPart as Record<string, unknown>,
    { raw: managedPart, problems: [] },
    getAdapter,
    managed.lineOf ?? (() => undefined),
    home,
    { secretEnv },
  );
  const fromUser = await checkConfig(
    file,
    merged.user as Record<string, unknown>,
    { raw: merged.user, problems: [] },
    getAdapter,
    user?.lineOf ?? (() => undefined),
    home,
    {
      otherProfiles: fromManaged.profiles.keys(),
      locks: { keys: managed.state.locked, by: managed.state.file },
      secretEnv,
    },
  );
  const profiles = new Map<string, ResolvedProfile>();
  for (const p of fromManaged.profiles.values()) {
    profiles.set(p.name, {
      ...p,
      managedBy: managed.state.file,
      fingerprint: `${p.fingerprint}|managed:${managed.state.file}`,
    });
  }
  for (const p of fromUser.profiles.values()) profiles.set(p.name, p);
  return {
    file,
    profiles,
    directories: fromUser.directories,
    audit: fromUser.audit,
    ...(fromUser.telemetry && { telemetry: fromUser.telemetry }),
    managed: managed.state,
    warnings: [...fromManaged.warnings, ...merged.warnings, ...fromUser.warnings],
  };
}

/**
 * The managed layer: untrusted or unreadable means ignored, with the reason kept for status and
 * doctor; a trusted file with mistakes in it fails the load like the user's own config would (a
 * reload keeps the previous config), rather than silently dropping the organisation's policy.
 */
async function readManaged(
  file: string,
): Promise<{ raw?: RawManagedConfig; lineOf?: LineOf; state: ManagedState } | undefined> {
  let text: string | undefined;
  try {
    text = await readManagedConfigFile(file);
  } catch (err) {
    return {
      state: {
        file,
        error:
          err instanceof BrokerError ? renderError(err) : `managed config ${file} cannot be read, so it is ignored`,
        profiles: [],
        locked: [],
      },
    };
  }
  if (text === undefined) return undefined;
  const { parsed, lineOf } = parseFile(text, file);
  const { raw, problems } = checkManagedSchema(parsed);
  if (!raw) throw new ConfigError(file, problems);
  return { raw, lineOf, state: { file, profiles: Object.keys(raw.profiles), locked: raw.locked ?? [] } };
}

function isStringRecord(value: unknown): value is Record<string, string> {
  return isPlainObject(value) && Object.values(value).every((v) => typeof v === 'string');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const indentOf = (line: string): number => /^ */.exec(line)![0].length;
const isKeyLine = (line: string): boolean => /^\s*[^\s#][^:#]*:(\s|$)/.test(line);

/**
 * The line indented too far, where the yaml library blames another (1-based lines). Two cases:
 * - a key line one space deeper than the key above it continues that key's plain value
 *   ("source: env:A ttl: 5m"), which the library reports at the line above;
 * - the first key of a block sets the block's column, so when that first key is the deeper one,
 *   the library blames the next key, which is where it should be (its parent's indentation plus
 *   the file's indentation step).
 */
function deeperLine(
  lines: readonly string[],
  code: string,
  reported: number,
): { line: number; by: number } | undefined {
  const at = lines[reported - 1];
  if (at === undefined) return undefined;
  const content = (n: number): boolean =>
    lines[n] !== undefined && lines[n]!.trim() !== '' && !lines[n]!.trim().startsWith('#');
  if (code === 'BLOCK_AS_IMPLICIT_KEY' || code === 'MULTILINE_IMPLICIT_KEY') {
    let n = reported;
    while (n < lines.length && !content(n)) n++;
    const next = lines[n];
    if (next !== undefined && isKeyLine(at) && isKeyLine(next) && indentOf(next) > indentOf(at))
      return { line: n + 1, by: indentOf(next) - indentOf(at) };
    return undefined;
  }
  if (code !== 'BAD_INDENT') return undefined;
  const before = (from: number): number => {
    let n = from - 1;
    while (n >= 0 && !content(n)) n--;
    return n;
  };
  const prev = before(reported - 1);
  const parent = prev < 0 ? -1 : before(prev);
  if (parent < 0 || !lines[parent]!.trimEnd().endsWith(':')) return undefined;
  const step = indentationStep(lines);
  const [p, f, r] = [indentOf(lines[parent]!), indentOf(lines[prev]!), indentOf(at)];
  if (f > r && r === p + step) return { line: prev + 1, by: f - r };
  return undefined;
}

/** How far the file indents a block under its key: the first nested line's indentation. */
function indentationStep(lines: readonly string[]): number {
  for (const line of lines) {
    if (line.trim() === '' || line.trim().startsWith('#')) continue;
    const indent = indentOf(line);
    if (indent > 0) return indent;
  }
  return 2;
}

function yamlMessage(message: string, line: number | undefined): string {
  const first = message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  // The usual cause: an unquoted value containing ": ", such as a command with a message in it.
  if (first.includes('Nested mappings are not allowed in compact mappings'))
    return `${first} (quote a value that contains ": ")`;
  if (first.includes('must start at the same column') || first.includes('Bad indentation')) {
    return `${first}: ${line ? `line ${line}` : 'a line'} is indented differently from the keys beside it — indent each key like the others at its level (spaces, not tabs)`;
  }
  return first;
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

function toProblem(
  issue: z.core.$ZodIssue,
  doc: Document,
  lineCounter: LineCounter,
  data: object,
  managed = false,
): ConfigProblem {
  const issuePath = issue.path.map((k) => (typeof k === 'symbol' ? String(k) : k));
  let message = issue.message;
  let at = issuePath;
  let suggestion: string | undefined;
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(issuePath, managed);
    message = issue.keys
      .map((k) => {
        const guess = closest(k, known);
        return `unknown key "${k}"${guess ? ` (did you mean "${guess}"?)` : ''}`;
      })
      .join('; ');
    if (known.length > 0) message += ` — known keys: ${known.join(', ')}`;
    if (issue.keys.length === 1) {
      at = [...issuePath, issue.keys[0]!];
      suggestion = closest(issue.keys[0]!, known);
    }
    const problem: ConfigProblem = {
      path: at.join('.'),
      line: lineOfPath(doc, lineCounter, at),
      message,
      kind: 'unknown-key',
    };
    if (suggestion) problem.suggestion = suggestion;
    return problem;
  } else if (issue.code === 'invalid_key') {
    message = `"${String(issuePath.at(-1))}" is not a valid profile name: use letters, digits, ".", "_" and "-"`;
  } else if (issue.code === 'invalid_type' && valueAt(data, issuePath) === undefined) {
    message = `is required: ${message.replace(/^Invalid input: /, '')}`;
  } else {
    message = message.replace(/^Invalid input: /, '');
  }
  return { path: at.join('.'), line: lineOfPath(doc, lineCounter, at), message, kind: 'value' };
}

function valueAt(data: object, p: ReadonlyArray<PropertyKey>): unknown {
  let cur: unknown = data;
  for (const k of p) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

function knownKeysAt(p: ReadonlyArray<PropertyKey>, managed: boolean): string[] {
  const blocks = adapterConfigKeys();
  if (p.length === 0)
    return ['defaults', 'profiles', 'directories', 'audit', 'telemetry', ...(managed ? ['locked'] : []), ...blocks];
  if (p.length === 1 && p[0] === 'defaults') return [...DEFAULT_KEYS];
  if (p.length === 1 && p[0] === 'telemetry') return [...TELEMETRY_KEYS];
  if (p.length === 2 && p[0] === 'profiles') return [...PROFILE_KEYS, ...blocks];
  return [];
}

/** YAML paths of `telemetry:` values read from a profile that `profiles` does not have. */
function telemetryProfileProblems(telemetry: RawTelemetry | undefined, profiles: Set<string>): string[][] {
  if (!telemetry) return [];
  const refs: Array<[string[], unknown]> = [
    [['telemetry', 'salt'], telemetry.salt],
    ...Object.entries(telemetry.headers ?? {}).map(([name, v]): [string[], unknown] => [
      ['telemetry', 'headers', name],
      v,
    ]),
  ];
  return refs
    .filter(([, v]) => isPlainObject(v) && typeof v.profile === 'string' && !profiles.has(v.profile))
    .map(([at]) => at);
}

/** The variable an `env:NAME` source reads, if `source` is one. */
function envSourceName(source: string): string | undefined {
  const name = source.startsWith('env:') ? source.slice('env:'.length) : undefined;
  return name !== undefined && ENV_VAR_NAME.test(name) ? name : undefined;
}

/** Every variable an env: profile of these configs reads: other profiles' values, by name. */
function envSourceNames(...configs: Array<Record<string, unknown> | RawConfig | undefined>): string[] {
  const names = new Set<string>();
  for (const config of configs) {
    const profiles = config && isPlainObject(config.profiles) ? config.profiles : {};
    for (const p of Object.values(profiles)) {
      const name = isPlainObject(p) && typeof p.source === 'string' ? envSourceName(p.source) : undefined;
      if (name) names.add(name);
    }
  }
  return [...names].sort();
}
