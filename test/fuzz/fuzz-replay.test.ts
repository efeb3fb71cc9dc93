// The fuzz corpus of the native shim's reply reader (test/fuzz/corpus/, seeds and what libFuzzer
// found with test/fuzz/run.sh), replayed under AddressSanitizer and UndefinedBehaviorSanitizer in
// every npm test: the harness (framed-reply-fuzz.c) is built with a small replay main instead of
// libFuzzer, with the first compiler here that has both sanitizers (CC, cc, clang, gcc). Any
// out-of-bounds read, overflow or broken invariant aborts it.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { privateTempDir, ROOT, run } from '../helpers/daemon.js';

const FUZZ = path.join(ROOT, 'test', 'fuzz');
const SANITIZE = ['-g', '-O1', '-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer'];
const SANITIZER_ENV = {
  ASAN_OPTIONS: 'abort_on_error=1:detect_leaks=1',
  UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
};

let dir: string;
/** The compiler used, or why none could be. */
let compiler: { cc: string } | { none: string };

/** The first compiler that builds and runs a program with both sanitizers. */
async function sanitizingCompiler(): Promise<{ cc: string } | { none: string }> {
  const probe = path.join(dir, 'probe.c');
  fs.writeFileSync(probe, 'int main(void) { return 0; }\n');
  const tried: string[] = [];
  for (const cc of [...new Set([process.env.CC, 'cc', 'clang', 'gcc'].filter((c): c is string => Boolean(c)))]) {
    const built = await run(cc, [...SANITIZE, '-o', path.join(dir, 'probe'), probe], { timeoutMs: 60_000 }).catch(
      () => undefined,
    );
    if (
      built?.code === 0 &&
      (await run(path.join(dir, 'probe'), [], { env: { ...process.env, ...SANITIZER_ENV } })).code === 0
    )
      return { cc };
    tried.push(cc);
  }
  return { none: `no C compiler here builds with -fsanitize=address,undefined (tried ${tried.join(', ')})` };
}

beforeAll(async () => {
  dir = privateTempDir('kb-fuzz-replay-');
  compiler = await sanitizingCompiler();
  if ('none' in compiler) return;
  const header = await run(process.execPath, [path.join(ROOT, 'scripts', 'native-header.mjs')]);
  expect(header.code).toBe(0);
  fs.writeFileSync(path.join(dir, 'kb-generated.h'), header.stdout);
  const native = path.join(ROOT, 'src', 'shim', 'native');
  const built = await run(
    compiler.cc,
    [
      ...SANITIZE,
      '-I',
      dir,
      '-I',
      native,
      '-o',
      path.join(dir, 'replay'),
      path.join(FUZZ, 'replay.c'),
      path.join(FUZZ, 'framed-reply-fuzz.c'),
      path.join(native, 'framed-reply.c'),
      path.join(native, 'utf8.c'),
    ],
    { timeoutMs: 90_000 },
  );
  expect(built.stderr).toBe('');
  expect(built.code).toBe(0);
}, 120_000);

describe('the framed reply reader, over the fuzz corpus', () => {
  it('reads every corpus file under ASan and UBSan without a finding', async (ctx) => {
    if ('none' in compiler) ctx.skip(compiler.none);
    const files = fs.readdirSync(path.join(FUZZ, 'corpus')).map((f) => path.join(FUZZ, 'corpus', f));
    expect(files.length).toBeGreaterThan(10);
    const r = await run(path.join(dir, 'replay'), files, {
      env: { ...process.env, ...SANITIZER_ENV },
      timeoutMs: 120_000,
    });
    expect(r.stderr).toBe('');
    expect(r).toMatchObject({ code: 0, stdout: `replayed ${files.length}\n` });
  }, 180_000);
});
