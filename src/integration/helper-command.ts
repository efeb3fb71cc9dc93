// The helper commands Claude Code runs through `sh -c` (apiKeyHelper, awsCredentialExport,
// otelHeadersHelper): building keybroker's, and reading someone else's just far enough to name its
// program. A foreign helper string may hold a literal key (`echo sk-ant-…`), so only its program
// name is ever printed.
import path from 'node:path';

export type HelperKind = 'api-key' | 'aws-credentials' | 'otel-headers';

export const HELPER_KINDS: readonly HelperKind[] = ['api-key', 'aws-credentials', 'otel-headers'];

/** The settings.json key Claude Code reads for each kind of helper. */
export const HELPER_SETTING: Readonly<Record<HelperKind, string>> = {
  'api-key': 'apiKeyHelper',
  'aws-credentials': 'awsCredentialExport',
  'otel-headers': 'otelHeadersHelper',
};

const FORMAT_FLAG: Readonly<Record<HelperKind, string[]>> = {
  'api-key': [],
  'aws-credentials': ['--format', 'aws-credentials'],
  'otel-headers': ['--format', 'headers'],
};

/** The shim's --format for each kind (what parseKeybrokerHelper reports back). */
export const HELPER_FORMAT: Readonly<Record<HelperKind, string>> = {
  'api-key': 'raw',
  'aws-credentials': 'aws-credentials',
  'otel-headers': 'headers',
};

/** Quote one word for a POSIX shell, only when it needs it. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Without a profile the shim sends its working directory and the daemon picks the profile. */
export function helperCommand(shim: string, kind: HelperKind, profile: string | undefined): string {
  return [shim, ...FORMAT_FLAG[kind], ...(profile === undefined ? [] : [profile])].map(shellQuote).join(' ');
}

export interface ParsedCommand {
  words: string[];
  /** Pipes, substitutions, redirections, several commands: more than one program may run. */
  complex: boolean;
}

/**
 * Split a command the way sh would for simple cases: quotes and backslashes. Anything beyond a
 * plain command with arguments is flagged `complex` (its first word is still reported).
 */
export function splitCommand(command: string): ParsedCommand {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let complex = false;
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (c === "'") {
      const end = command.indexOf("'", i + 1);
      if (end === -1) return { words: [...words, word + command.slice(i + 1)], complex: true };
      word += command.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < command.length && command[j] !== '"'; j++) {
        if (command[j] === '\\' && j + 1 < command.length && '"\\$`'.includes(command[j + 1]!)) j++;
        else if (command[j] === '$' || command[j] === '`') complex = true;
        word += command[j];
      }
      if (j >= command.length) complex = true;
      inWord = true;
      i = j;
    } else if (c === '\\' && i + 1 < command.length) {
      word += command[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      if ('|&;<>()$`*?[~#'.includes(c)) complex = true;
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return { words, complex };
}

/** A leading `VAR=value` word sets an environment variable for the command; the program follows. */
export function programWord(parsed: ParsedCommand): { program: string | undefined; args: string[] } {
  let i = 0;
  while (i < parsed.words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(parsed.words[i]!)) i++;
  return { program: parsed.words[i], args: parsed.words.slice(i + 1) };
}

export function isKeybrokerShim(program: string | undefined): boolean {
  return program !== undefined && /^keybroker-shim(\.c?js)?$/.test(path.basename(program));
}

export interface KeybrokerHelper {
  /** The shim as written: an absolute path, or a name looked up on PATH. */
  shim: string;
  /** `node /path/keybroker-shim.js …` runs node first. */
  interpreter: string | undefined;
  /** The profile argument; undefined when there is none (the daemon chooses by directory). */
  profile: string | undefined;
  format: string;
}

/** If `command` runs keybroker-shim, what it asks for. */
export function parseKeybrokerHelper(command: string): KeybrokerHelper | undefined {
  const parsed = splitCommand(command);
  if (parsed.complex) return undefined;
  const { program, args } = programWord(parsed);
  let shim = program;
  let rest = args;
  let interpreter: string | undefined;
  if (program !== undefined && /^node(js)?$/.test(path.basename(program)) && isKeybrokerShim(args[0])) {
    interpreter = program;
    shim = args[0];
    rest = args.slice(1);
  }
  if (!isKeybrokerShim(shim)) return undefined;
  let profile: string | undefined;
  let format = 'raw';
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--format') format = rest[++i] ?? format;
    else if (a.startsWith('--format=')) format = a.slice('--format='.length);
    else if (a === '--socket') i++;
    else if (!a.startsWith('-')) profile = a;
  }
  return { shim: shim!, interpreter, profile, format };
}

/**
 * A printable description of a helper command: keybroker's in full (paths and a profile name), any
 * other by its program name only, since its arguments may be a key.
 */
export function describeHelper(command: string): string {
  const parsed = splitCommand(command);
  const ours = parseKeybrokerHelper(command);
  // A leading VAR=value word could carry anything; show ours in full only without one.
  if (ours)
    return /^[A-Za-z_][A-Za-z0-9_]*=/.test(parsed.words[0] ?? '')
      ? `keybroker-shim …${ours.profile === undefined ? '' : ` ${ours.profile}`}`
      : command;
  const { program } = programWord(parsed);
  if (program === undefined || /['"$`\\=]/.test(program)) return '(a command)';
  return `${path.basename(program)} …`;
}
