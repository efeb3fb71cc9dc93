// `setup claude --adopt`: an apiKeyHelper command someone already uses, read as the keybroker
// source that fetches the same value — where the translation is exact:
//
//   op read [--no-newline|-n] [--account A] op://V/I/F        -> op://V/I/F   (onepassword.account: A)
//   vault kv get [-mount=M] [-version=N] -field=F PATH       -> vault://[M/]PATH[?version=N]#F
//   aws [--region R] [--profile P] secretsmanager get-secret-value --secret-id ID
//       --query SecretString --output text [--version-stage S | --version-id V]
//                                                            -> aws-sm://ID[?region=R][&versionStage=S]  (aws.profile: P)
//
// Anything else (another flag, a pipe, a variable set in front, a program we do not know) stays
// the command it is: exec:COMMAND. The translation only proposes: adopt fetches both and keeps the
// native source only when it serves the same value, so a translation that is not exact can cost a
// fallback to exec:, never a wrong key. Nothing here runs anything, and the reasons never quote an
// argument (a helper may hold a literal key).
import path from 'node:path';
import { programWord, splitCommand } from './helper-command.js';

/** An adapter settings block the profile needs beside its source (the op --account, the aws --profile). */
export interface ProfileBlock {
  key: 'onepassword' | 'aws';
  value: Record<string, string>;
}

export interface HelperTranslation {
  /** The profile's source URI. */
  source: string;
  block?: ProfileBlock;
  /** 'native': a source keybroker reads itself; 'exec': the command, run as it is. */
  kind: 'native' | 'exec';
  /** For exec: why no native source fits (printable: names no argument). */
  why?: string;
}

export function execTranslation(command: string, why: string): HelperTranslation {
  return { source: `exec:${command.trim()}`, kind: 'exec', why };
}

/** The keybroker source for a helper command (see the table above). */
export function translateHelper(command: string): HelperTranslation {
  const parsed = splitCommand(command);
  if (parsed.complex)
    return execTranslation(command, 'it is more than one plain command (a pipe, a substitution or a redirection)');
  const { program, args } = programWord(parsed);
  if (program === undefined) return execTranslation(command, 'it names no program');
  if (program !== parsed.words[0]) return execTranslation(command, 'it sets environment variables for the command');
  const name = path.basename(program);
  const native =
    name === 'op'
      ? translateOpRead(args)
      : name === 'vault'
        ? translateVaultKvGet(args)
        : name === 'aws'
          ? translateAws(args)
          : undefined;
  if (native === undefined) return execTranslation(command, `keybroker has no native source for ${name}`);
  if (typeof native === 'string') return execTranslation(command, native);
  return native;
}

/** A flag's value: `--name=value` or `--name value`; `at` is the flag's index. */
interface Flag {
  name: string;
  value: string | undefined;
  /** How many words it took. */
  width: number;
}

function readFlag(args: readonly string[], at: number, takesValue: (name: string) => boolean): Flag {
  const word = args[at]!;
  const eq = word.indexOf('=');
  if (eq > 0) return { name: word.slice(0, eq), value: word.slice(eq + 1), width: 1 };
  if (takesValue(word)) return { name: word, value: args[at + 1], width: 2 };
  return { name: word, value: undefined, width: 1 };
}

// ---- op read ----

const OP_VALUE_FLAGS = new Set(['--account']);

function translateOpRead(args: readonly string[]): HelperTranslation | string {
  if (args[0] !== 'read') return 'only op read has a native form';
  let reference: string | undefined;
  let account: string | undefined;
  for (let i = 1; i < args.length;) {
    const word = args[i]!;
    if (!word.startsWith('-')) {
      if (reference !== undefined) return 'op read is given more than one reference';
      reference = word;
      i++;
      continue;
    }
    const flag = readFlag(args, i, (n) => OP_VALUE_FLAGS.has(n));
    i += flag.width;
    // --no-newline changes only the newline after the value, which Claude Code trims anyway.
    if ((flag.name === '--no-newline' || flag.name === '-n') && flag.value === undefined) continue;
    if (flag.name === '--account' && flag.value) {
      account = flag.value;
      continue;
    }
    return 'op read has an option keybroker cannot translate exactly';
  }
  if (reference === undefined || !reference.startsWith('op://')) return 'op read is not given an op:// reference';
  return {
    source: reference,
    kind: 'native',
    ...(account !== undefined && { block: { key: 'onepassword', value: { account } } }),
  };
}

// ---- vault kv get ----

// Vault's CLI takes -flag and --flag alike, and stops reading flags at the first argument that is
// not one: a flag after the path is an argument (and the command fails), so it is not translated.
const VAULT_VALUE_FLAGS = new Set(['field', 'mount', 'version']);

function translateVaultKvGet(args: readonly string[]): HelperTranslation | string {
  if (args[0] !== 'kv' || args[1] !== 'get') return 'only vault kv get has a native form';
  const flags: Partial<Record<'field' | 'mount' | 'version', string>> = {};
  let i = 2;
  while (i < args.length && args[i]!.startsWith('-') && args[i] !== '-' && args[i] !== '--') {
    const flag = readFlag(args, i, (n) => VAULT_VALUE_FLAGS.has(n.replace(/^--?/, '')));
    i += flag.width;
    const name = flag.name.replace(/^--?/, '');
    if (!VAULT_VALUE_FLAGS.has(name) || flag.value === undefined || flag.value === '')
      return 'vault kv get has an option keybroker cannot translate exactly';
    if (flags[name as keyof typeof flags] !== undefined) return `vault kv get is given -${name} twice`;
    flags[name as keyof typeof flags] = flag.value;
  }
  if (args[i] === '--') i++;
  const rest = args.slice(i);
  if (rest.length !== 1) return 'vault kv get is not given exactly one path (flags after the path are not flags)';
  if (flags.field === undefined) return 'without -field, vault kv get prints a table, not the key';
  if (flags.version !== undefined && !/^[1-9]\d{0,9}$/.test(flags.version))
    return 'vault kv get -version is not a version number';
  // `-mount=M PATH` reads PATH inside the mount at M, which is the same secret as M/PATH: Vault does
  // not allow a mount below another, so M/PATH finds the same mount (and engine version) again.
  const segments = [...(flags.mount ?? '').split('/'), ...rest[0]!.split('/')].filter((s) => s !== '');
  if (segments.length < 2 || segments.some((s) => s === '.' || s === '..'))
    return 'vault kv get is not given a mount and a path';
  const query = flags.version === undefined ? '' : `?version=${flags.version}`;
  return {
    source: `vault://${segments.map(encodeURIComponent).join('/')}${query}#${encodeURIComponent(flags.field)}`,
    kind: 'native',
  };
}

// ---- aws secretsmanager get-secret-value ----

const AWS_VALUE_FLAGS = new Set([
  '--secret-id',
  '--query',
  '--output',
  '--region',
  '--profile',
  '--version-stage',
  '--version-id',
]);

function translateAws(args: readonly string[]): HelperTranslation | string {
  const positional: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length;) {
    const word = args[i]!;
    if (!word.startsWith('--')) {
      positional.push(word);
      i++;
      continue;
    }
    const flag = readFlag(args, i, (n) => AWS_VALUE_FLAGS.has(n));
    i += flag.width;
    // The pager only matters on a terminal, and a helper has none.
    if (flag.name === '--no-cli-pager' && flag.value === undefined) continue;
    if (!AWS_VALUE_FLAGS.has(flag.name) || flag.value === undefined || flag.value === '')
      return 'aws has an option keybroker cannot translate exactly';
    if (flags.has(flag.name)) return `aws is given ${flag.name} twice`;
    flags.set(flag.name, flag.value);
  }
  if (positional[0] !== 'secretsmanager' || positional[1] !== 'get-secret-value' || positional.length !== 2)
    return 'only aws secretsmanager get-secret-value has a native form';
  const id = flags.get('--secret-id');
  if (id === undefined) return 'aws secretsmanager get-secret-value is not given --secret-id';
  if (flags.get('--query') !== 'SecretString' || flags.get('--output') !== 'text')
    return 'without --query SecretString --output text, aws prints JSON, not the key';
  const params: string[] = [];
  const region = flags.get('--region');
  if (region !== undefined) params.push(`region=${encodeURIComponent(region)}`);
  const stage = flags.get('--version-stage');
  if (stage !== undefined) params.push(`versionStage=${encodeURIComponent(stage)}`);
  const version = flags.get('--version-id');
  if (version !== undefined) params.push(`versionId=${encodeURIComponent(version)}`);
  const profile = flags.get('--profile');
  return {
    source: `aws-sm://${id}${params.length > 0 ? `?${params.join('&')}` : ''}`,
    kind: 'native',
    ...(profile !== undefined && { block: { key: 'aws', value: { profile } } }),
  };
}

/** A profile name suggested by a source: the item, secret or path it names (letters, digits, - _ .). */
export function profileNameFor(translation: HelperTranslation): string {
  let hint: string | undefined;
  const source = translation.source;
  if (translation.kind === 'native') {
    const body = source.replace(/^[a-z-]+:\/\//, '').replace(/[?#].*$/, '');
    const parts = body.split(/[/:]/).filter(Boolean);
    // op://VAULT/ITEM/FIELD: the item; vault:// and aws-sm://: the last segment.
    hint = source.startsWith('op://') ? parts[1] : parts.at(-1);
    if (hint !== undefined) {
      try {
        hint = decodeURIComponent(hint);
      } catch {
        // a malformed escape: the name is only a suggestion
      }
    }
  }
  const slug = (hint ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 40);
  return slug === '' || slug === 'default' ? 'adopted' : slug;
}
