// Shared by `keybroker status` and `keybroker doctor`: a profile whose key the daemon refused as
// rejected says so, since when and to whom, until a fetch brings a different value.
import { formatDuration } from '../duration.js';
import type { ProfileStatus } from '../protocol/messages.js';

/** What to say about a rejected key, and what to do; undefined when the key is not rejected. */
export function rejectionNote(p: ProfileStatus, now: number): { message: string; fix: string } | undefined {
  const r = p.rejected;
  if (!r) return undefined;
  const who = `${r.consumer.name ?? 'process'} (pid ${r.consumer.pid})`;
  const ago = formatDuration(Math.max(0, now - r.atMs));
  const requests = r.requests === 1 ? '1 request' : `${r.requests} requests`;
  return {
    message: `key rejected ${ago} ago for ${who}: the source still returns the value that got the 401 (${requests} refused)`,
    fix: `rotate it at the source, then run: keybroker refresh ${p.name}`,
  };
}
