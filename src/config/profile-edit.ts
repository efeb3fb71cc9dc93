// Writing one profile into a config's text, for `keybroker init` and `setup claude --adopt`: a new
// config is the commented starter with that profile as its first; an existing one gets the
// profile added (or, when the caller was told to, replaced), with every other line and comment
// kept as written. Text in, text out: the callers check the result by loading it before they
// write anything.
import { isMap, isScalar, parseDocument, stringify, type YAMLMap } from 'yaml';
import { BrokerError } from '../errors.js';
import { PROFILE_NAME } from './schema.js';
import { starterWithProfile } from './starter.js';

export interface ProfileEntry {
  source: string;
  /** An adapter settings block the profile needs (`onepassword: {account}`, `aws: {profile}`). */
  block?: { key: string; value: Record<string, string> } | undefined;
}

/** What a profile of that name is in `text` now: absent, or its source (undefined: not a string). */
export function existingProfile(text: string, name: string): { source: string | undefined } | undefined {
  const doc = parseDocument(text);
  const profiles = doc.get('profiles');
  if (!isMap(profiles) || !profiles.has(name)) return undefined;
  const source = doc.getIn(['profiles', name, 'source']);
  return { source: typeof source === 'string' ? source : undefined };
}

/** The entry as a YAML mapping's items, for the starter (which indents it under `profiles:`). */
function entryObject(entry: ProfileEntry): Record<string, unknown> {
  return { source: entry.source, ...(entry.block && { [entry.block.key]: entry.block.value }) };
}

/**
 * `existing` with profile `name` set to `entry` (a new starter config when `existing` is
 * undefined). A profile of that name that reads another source is replaced only with `replace`;
 * otherwise USAGE. The same entry again returns the text unchanged.
 */
export function configWithProfile(
  existing: string | undefined,
  name: string,
  entry: ProfileEntry,
  options: { replace: boolean; comment?: string },
): string {
  if (!PROFILE_NAME.test(name))
    throw new BrokerError('USAGE', `"${name}" is not a valid profile name: use letters, digits, ".", "_" and "-"`);
  const object = entryObject(entry);
  if (existing === undefined) {
    const lines = stringify({ [name]: object }, { lineWidth: 0 })
      .trimEnd()
      .split('\n')
      .map((l) => `  ${l}`);
    const comment = options.comment === undefined ? [] : [`  # ${options.comment}`];
    return starterWithProfile([...comment, ...lines].join('\n'));
  }
  const doc = parseDocument(existing);
  if (doc.errors.length > 0) throw new BrokerError('CONFIG_INVALID', 'the config is not valid YAML');
  const profiles = doc.get('profiles', true);
  if (
    profiles !== undefined &&
    profiles !== null &&
    !isMap(profiles) &&
    !(isScalar(profiles) && profiles.value === null)
  )
    throw new BrokerError('CONFIG_INVALID', 'profiles: in the config is not a mapping');
  const current = existingProfile(existing, name);
  if (current) {
    if (current.source === entry.source && sameBlock(doc.getIn(['profiles', name]), entry)) return existing;
    if (!options.replace)
      throw new BrokerError('USAGE', `the config already has a profile "${name}" that reads another source`, {
        fix: `pick another name with --profile, or replace it with --force (a backup is kept)`,
      });
  }
  const spliced = isMap(profiles)
    ? spliceProfile(existing, profiles, name, object, current ? undefined : options.comment)
    : undefined;
  if (spliced !== undefined) return spliced;
  if (profiles === undefined) {
    // No profiles: at all: a new block at the end, every line above it as it was.
    const separator = existing === '' || existing.endsWith('\n') ? '' : '\n';
    return `${existing}${separator}profiles:\n${profileLines(name, object, '  ', options.comment)}`;
  }
  // profiles: with nothing under it, or a flow mapping: rewritten by the YAML library.
  doc.setIn(['profiles', name], doc.createNode(object));
  return doc.toString({ lineWidth: 0 });
}

/** The profile as YAML lines at `indent`, ending in a newline, the comment above its name. */
function profileLines(
  name: string,
  object: Record<string, unknown>,
  indent: string,
  comment: string | undefined,
): string {
  const lines = stringify({ [name]: object }, { lineWidth: 0 })
    .trimEnd()
    .split('\n');
  return [...(comment === undefined ? [] : [`# ${comment}`]), ...lines].map((l) => `${indent}${l}\n`).join('');
}

/**
 * The text with the profile put into a block mapping as text: after the last profile when it is
 * new, in place of the old one's lines when it replaces it. Every other byte stays as written
 * (the YAML library's own output would reformat comments and spacing). Undefined where the
 * mapping is not one this can splice (a flow mapping, or an empty one).
 */
function spliceProfile(
  text: string,
  profiles: YAMLMap,
  name: string,
  object: Record<string, unknown>,
  comment: string | undefined,
): string | undefined {
  const first = profiles.items[0];
  if (profiles.flow || !first || !isScalar(first.key) || !first.key.range) return undefined;
  const lineStart = (at: number): number => text.lastIndexOf('\n', at - 1) + 1;
  const indent = text.slice(lineStart(first.key.range[0]), first.key.range[0]);
  if (!/^ +$/.test(indent)) return undefined;
  /** Where the line that holds the end of a pair's value ends (past its newline). */
  const endOf = (pair: (typeof profiles.items)[number]): number | undefined => {
    const node = (pair.value ?? pair.key) as { range?: [number, number, number] } | null;
    if (!node?.range) return undefined;
    const end = node.range[2];
    if (end === 0 || text[end - 1] === '\n') return end;
    const nl = text.indexOf('\n', end);
    return nl === -1 ? text.length : nl + 1;
  };
  const block = profileLines(name, object, indent, comment);
  const at = profiles.items.findIndex((p) => isScalar(p.key) && String(p.key.value) === name);
  if (at >= 0) {
    const pair = profiles.items[at]!;
    const end = endOf(pair);
    const key = pair.key as { range?: [number, number, number] };
    if (end === undefined || !key.range) return undefined;
    return `${text.slice(0, lineStart(key.range[0]))}${block}${text.slice(end)}`;
  }
  const end = endOf(profiles.items.at(-1)!);
  if (end === undefined) return undefined;
  const before = text.slice(0, end);
  return `${before}${before.endsWith('\n') ? '' : '\n'}${block}${text.slice(end)}`;
}

/** The profile as written has the entry's settings block (its other keys, a ttl say, are the user's). */
function sameBlock(profile: unknown, entry: ProfileEntry): boolean {
  if (!entry.block) return true;
  const written = isMap(profile) ? (profile.toJSON() as Record<string, unknown>) : {};
  return JSON.stringify(written[entry.block.key]) === JSON.stringify(entry.block.value);
}
