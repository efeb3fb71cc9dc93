// Shared by `keybroker status` and `keybroker doctor`.
import type { ProfileStatus } from '../protocol/messages.js';

/**
 * Claude Code's invocation markers are observed behaviour, not a contract: when a Claude Code
 * consumer shows neither, keybroker does not guess whether it is apiKeyHelper; it says so.
 */
export function unmarkedNote(p: ProfileStatus): string | undefined {
  const n = p.unmarkedClaudeConsumers ?? 0;
  if (n === 0) return undefined;
  return `${n} Claude Code consumer${n === 1 ? '' : 's'} without a known helper marker (AI_AGENT=…_harness or the Bash tool's CLAUDECODE=1): repeat detection is off for ${n === 1 ? 'it' : 'them'}, so a rejected key is not refetched at once — after a 401, run: keybroker refresh ${p.name}`;
}
