// An exec: source that prints bytes that are not text must get the same clear INVALID_VALUE as a
// file: source holding them — not be served with its bytes silently replaced (U+FFFD), which
// would hand Claude Code a key that is neither the source's nor an error.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { privateTempDir, startDaemon, type DaemonHandle } from '../helpers/daemon.js';

let d: DaemonHandle;
beforeAll(async () => {
  const dir = privateTempDir();
  fs.writeFileSync(path.join(dir, 'binary.key'), Buffer.from([0x73, 0x6b, 0x2d, 0xff, 0xfe, 0x41, 0x0a]), {
    mode: 0o600,
  });
  fs.writeFileSync(
    path.join(dir, 'binary.json'),
    Buffer.concat([Buffer.from('{"value":"sk-'), Buffer.from([0xff, 0xfe]), Buffer.from('A"}\n')]),
    { mode: 0o600 },
  );
  d = await startDaemon({
    dir,
    config: [
      'profiles:',
      '  viaexec:',
      '    source: exec:cat ./binary.key',
      '  viafile:',
      '    source: file:~/binary.key',
      '  viajson:',
      '    source: exec:cat ./binary.json',
      '    output: json',
    ].join('\n'),
  });
});

it.each(['viaexec', 'viafile', 'viajson'])(
  '%s: bytes that are not UTF-8 are refused (INVALID_VALUE, exit 15), nothing printed',
  async (profile) => {
    expect(await d.request({ v: 1, op: 'get', profile })).toMatchObject({
      ok: false,
      error: { code: 'INVALID_VALUE' },
    });
    const shim = await d.shim(profile);
    expect(shim.code).toBe(15);
    expect(shim.stdout).toBe('');
  },
);
