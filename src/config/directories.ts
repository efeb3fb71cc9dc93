// Per-directory profiles: the config's `directories:` map (directory → profile) and the one rule
// that picks a profile for a request. Claude Code runs apiKeyHelper in the project's directory, so
// the shim sends its working directory and the daemon maps it to a profile:
//   1. a profile the caller named (an argument) always wins;
//   2. else the longest configured directory that contains the working directory, compared on
//      path-segment boundaries (/a/b holds /a/b/c, not /a/bc) after resolving symlinks on both sides;
//   3. else `default`.
// `keybroker get`, `keybroker run`, `doctor` and `status` use the same functions.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ProfileChoice } from '../protocol/messages.js';
import { expandHome } from '../client/socket-path.js';

export const DEFAULT_PROFILE = 'default';

export interface DirectoryRule {
  /** As written in the config: `~/code/acme`. */
  dir: string;
  /** Absolute, symlinks resolved (when the directory exists). */
  path: string;
  profile: string;
}

export interface ChosenProfile {
  profile: string;
  chosenBy: ProfileChoice;
  /** The entry that matched, when chosen by directory. */
  rule?: DirectoryRule;
}

export interface DirectoryProblem {
  /** The key as written. */
  dir: string;
  message: string;
}

/**
 * Resolve the `directories:` map: expand `~/`, require an absolute path, follow symlinks. A
 * directory that does not exist (yet) keeps its normalized path: a project cloned later matches
 * once it is there, as long as no symlink leads to it. `profiles` names the profiles that exist.
 */
export async function resolveDirectoryRules(
  raw: Readonly<Record<string, string>> | undefined,
  home: string,
  profiles: ReadonlySet<string>,
): Promise<{ rules: DirectoryRule[]; problems: DirectoryProblem[] }> {
  const rules: DirectoryRule[] = [];
  const problems: DirectoryProblem[] = [];
  const byPath = new Map<string, DirectoryRule>();
  for (const [dir, profile] of Object.entries(raw ?? {})) {
    const expanded = expandHome(dir, home);
    if (!path.isAbsolute(expanded)) {
      problems.push({
        dir,
        message: 'must be an absolute path or start with ~/ (the shim sends absolute working directories)',
      });
      continue;
    }
    if (!profiles.has(profile)) {
      const known = [...profiles];
      problems.push({
        dir,
        message: `maps to profile "${profile}", which does not exist (profiles: ${known.join(', ') || 'none'}) — add it under profiles: or fix the name`,
      });
      continue;
    }
    const resolved = await realDirectory(expanded);
    const other = byPath.get(resolved);
    if (other && other.profile !== profile) {
      problems.push({
        dir,
        message: `is the same directory as ${other.dir} (${resolved}), which maps to "${other.profile}": keep one`,
      });
      continue;
    }
    const rule = { dir, path: resolved, profile };
    byPath.set(resolved, rule);
    rules.push(rule);
  }
  return { rules, problems };
}

/** The directory with symlinks resolved; the normalized path when it cannot be resolved. */
export async function realDirectory(dir: string): Promise<string> {
  try {
    return await fs.realpath(dir);
  } catch {
    return path.resolve(dir);
  }
}

/** Is `child` the directory `parent` or inside it (whole path segments)? Both absolute, normalized. */
export function isWithin(child: string, parent: string): boolean {
  if (child === parent) return true;
  return child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);
}

/** The longest rule whose directory holds `cwd` (already resolved). */
export function matchDirectory(rules: readonly DirectoryRule[], cwd: string): DirectoryRule | undefined {
  let best: DirectoryRule | undefined;
  for (const rule of rules) {
    if (isWithin(cwd, rule.path) && (!best || rule.path.length > best.path.length)) best = rule;
  }
  return best;
}

/** The rule itself: an explicit profile, else the longest matching directory, else `default`. */
export function chooseProfile(
  rules: readonly DirectoryRule[],
  explicit: string | undefined,
  resolvedCwd: string | undefined,
): ChosenProfile {
  if (explicit !== undefined) return { profile: explicit, chosenBy: 'argument' };
  const rule = resolvedCwd === undefined ? undefined : matchDirectory(rules, resolvedCwd);
  if (rule) return { profile: rule.profile, chosenBy: 'directory', rule };
  return { profile: DEFAULT_PROFILE, chosenBy: 'default' };
}

/** Why a profile was chosen, in words: `work (directories: ~/code/acme)`. */
export function describeChoice(choice: ChosenProfile): string {
  if (choice.chosenBy === 'directory') return `${choice.profile} (directories: ${choice.rule!.dir})`;
  if (choice.chosenBy === 'argument') return `${choice.profile} (named by the helper's profile argument)`;
  return `${choice.profile} (no directories: entry matches, so the default profile)`;
}

export interface DirectoryChooserOptions {
  now?: () => number;
  /** How long a resolved working directory is reused. */
  cacheMs?: number;
  maxCached?: number;
}

/**
 * The daemon's chooser: the same rule, with each request's working directory resolved through a
 * small cache — Claude Code sessions ask from the same few directories, and a realpath per get
 * would cost more than serving the value from memory.
 */
export class DirectoryChooser {
  #rules: readonly DirectoryRule[] = [];
  readonly #now: () => number;
  readonly #cacheMs: number;
  readonly #maxCached: number;
  readonly #resolved = new Map<string, { path: string; at: number }>();

  constructor(options: DirectoryChooserOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#cacheMs = options.cacheMs ?? 5_000;
    this.#maxCached = options.maxCached ?? 256;
  }

  get rules(): readonly DirectoryRule[] {
    return this.#rules;
  }

  /** Install the rules of a newly loaded config. */
  setRules(rules: readonly DirectoryRule[]): void {
    this.#rules = rules;
    this.#resolved.clear();
  }

  async choose(explicit: string | undefined, cwd: string | undefined): Promise<ChosenProfile> {
    // Without rules (or with a named profile) the directory cannot matter: skip the realpath.
    if (explicit !== undefined || cwd === undefined || this.#rules.length === 0)
      return chooseProfile(this.#rules, explicit, undefined);
    return chooseProfile(this.#rules, undefined, await this.#resolve(cwd));
  }

  async #resolve(cwd: string): Promise<string> {
    const t = this.#now();
    const hit = this.#resolved.get(cwd);
    if (hit && t - hit.at < this.#cacheMs) return hit.path;
    const resolved = await realDirectory(cwd);
    this.#resolved.delete(cwd);
    if (this.#resolved.size >= this.#maxCached) this.#resolved.delete(this.#resolved.keys().next().value!);
    this.#resolved.set(cwd, { path: resolved, at: t });
    return resolved;
  }
}
