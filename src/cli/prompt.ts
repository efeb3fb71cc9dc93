// Questions for a person at a terminal (keybroker init). Questions go to stderr: stdout carries
// what was done, for a log or a script. The progress line for anything slow is ./progress.ts.
import readline from 'node:readline/promises';
import { KeyInputCancelled } from './secret-input.js';

export interface Terminal {
  /** One line of text; `fallback` when the answer is empty. ^C or ^D: KeyInputCancelled. */
  ask(question: string, fallback?: string): Promise<string>;
  /** y or n, `fallback` on Enter. */
  confirm(question: string, fallback: boolean): Promise<boolean>;
  /** A numbered choice; returns the index. */
  choose(question: string, options: readonly string[], fallback: number): Promise<number>;
}

export function terminal(
  input: NodeJS.ReadStream = process.stdin,
  output: NodeJS.WriteStream = process.stderr,
): Terminal {
  const ask = async (question: string, fallback = ''): Promise<string> => {
    const rl = readline.createInterface({ input, output, terminal: Boolean(input.isTTY) });
    let answered = false;
    // ^D closes the interface; ^C is turned into the same. (readline's own 'close' listeners
    // detach it from the terminal: they must stay.)
    const cancelled = new Promise<never>((_, reject) => {
      rl.once('close', () => {
        if (!answered) reject(new KeyInputCancelled());
      });
      rl.once('SIGINT', () => {
        output.write('\n');
        rl.close();
      });
    });
    try {
      const answer = await Promise.race([rl.question(question), cancelled]);
      return answer.trim() === '' ? fallback : answer.trim();
    } finally {
      answered = true;
      rl.close();
    }
  };
  return {
    ask,
    async confirm(question, fallback) {
      for (;;) {
        const answer = (await ask(`${question} ${fallback ? '[Y/n]' : '[y/N]'} `)).toLowerCase();
        if (answer === '') return fallback;
        if (answer === 'y' || answer === 'yes') return true;
        if (answer === 'n' || answer === 'no') return false;
        output.write('Answer y or n.\n');
      }
    },
    async choose(question, options, fallback) {
      output.write(`${question}\n`);
      options.forEach((o, i) => output.write(`  ${i + 1}) ${o}\n`));
      for (;;) {
        const answer = await ask(`Choice [${fallback + 1}]: `, String(fallback + 1));
        const n = Number(answer);
        if (Number.isInteger(n) && n >= 1 && n <= options.length) return n - 1;
        output.write(`Answer a number from 1 to ${options.length}.\n`);
      }
    },
  };
}
