// A terminal program driven through tmux, for tests of interactive sessions (the real Claude Code's
// first-run dialogs): its own tmux server on a private socket, started with the given environment
// and working directory; keys in, the screen's text out. tmux is a Debian package .ci/run installs.
// Closed, if the test has not closed it, when the test that started it is done.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanUp } from './cleanup.js';
import { isRunning } from './daemon.js';

export interface TmuxSession {
  /** Send keys: tmux key names ("Enter", "Down") or, with `literal`, text to type. */
  keys(keys: string, literal?: boolean): void;
  /** The visible screen, as text. */
  screen(): string;
  /** Wait until the screen matches (polling its text: a terminal has no readiness handshake). */
  waitFor(pattern: RegExp, what: string, timeoutMs?: number): Promise<string>;
  /**
   * Press a key until the screen shows `then`: a key sent in the moment before a dialog takes
   * input is lost, so it is sent again (once) if the screen has not changed at all within 10 s.
   */
  press(key: string, then: RegExp, what: string): Promise<string>;
  /** Stop the program and the tmux server, and wait for the program to exit. */
  close(): Promise<void>;
}

export function startTmux(options: {
  dir: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  command: string[];
}): TmuxSession {
  const socket = path.join(options.dir, 'tmux.sock');
  const tmux = (...args: string[]): string =>
    execFileSync('tmux', ['-S', socket, ...args], { env: options.env, encoding: 'utf8', timeout: 10_000 });
  tmux('new-session', '-d', '-s', 'kb', '-x', '200', '-y', '50', '-c', options.cwd, ...options.command);
  // A program that exits leaves its last screen (and tmux's "Pane is dead") to read.
  tmux('set-option', '-t', 'kb', 'remain-on-exit', 'on');
  const pid = Number(tmux('display-message', '-p', '-t', 'kb', '#{pane_pid}').trim());
  const session: TmuxSession = {
    keys: (keys, literal = false) => void tmux('send-keys', '-t', 'kb', ...(literal ? ['-l', keys] : [keys])),
    screen: () => tmux('capture-pane', '-p', '-t', 'kb'),
    waitFor: async (pattern, what, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const text = session.screen();
        if (pattern.test(text)) return text;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the screen:\n${text}`);
        await sleep(200);
      }
    },
    press: async (key, then, what) => {
      const before = session.screen();
      session.keys(key);
      try {
        return await session.waitFor(then, what, 10_000);
      } catch {
        // Sent again only when nothing at all happened: a second press on a screen that moved on
        // would answer the next dialog.
        if (session.screen() === before) session.keys(key);
        return session.waitFor(then, what);
      }
    },
    close: async () => {
      try {
        tmux('kill-server');
      } catch {
        // already gone
      }
      // The program gets SIGHUP and may still write its files for a moment: wait for its exit.
      for (let i = 0; i < 50 && isRunning(pid); i++) await sleep(100);
      if (isRunning(pid)) process.kill(pid, 'SIGKILL');
    },
  };
  cleanUp(() => session.close());
  return session;
}
