// keybroker installed without its hardening addon (no C compiler at install time, or npm told not
// to run install scripts): the daemon serves as it always did, says in status that it is not
// hardened and why, and doctor names what is missing and how to get it.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DoctorCheck } from '../../src/integration/doctor.js';
import type { StatusReply } from '../../src/protocol/messages.js';
import { privateTempDir, run, startDaemon, shellQuote } from '../helpers/daemon.js';
import { installCopy } from '../helpers/install-copy.js';

const KEY = 'sk-no-addon-3b7e';

describe.skipIf(process.platform !== 'linux' && process.platform !== 'darwin')('without the hardening addon', () => {
  it('the daemon still serves; status says it is not hardened; doctor says what is missing and how to get it', async () => {
    const dir = privateTempDir('kb-noaddon-');
    const kb = installCopy(path.join(dir, 'install'), { addon: false });
    expect(fs.existsSync(kb.addon)).toBe(false);
    const d = await startDaemon({
      dir,
      cli: kb.cli,
      config: 'profiles:\n  default:\n    source: env:KB_KEY\n',
      env: { KB_KEY: KEY },
    });

    expect(await run(process.execPath, [kb.cli, 'get', 'default'], { env: d.env })).toMatchObject({
      code: 0,
      stdout: `${KEY}\n`,
    });
    const shim = await run('/bin/sh', ['-c', shellQuote(kb.shim)], { env: d.env });
    expect(shim).toMatchObject({ code: 0, stdout: `${KEY}\n` });

    const status = JSON.parse(
      (await run(process.execPath, [kb.cli, 'status', '--json'], { env: d.env })).stdout,
    ) as StatusReply;
    expect(status.daemon.hardening).toMatchObject({ addon: false, nonDumpable: false, peerCredentials: false });
    expect(status.daemon.hardening!.problems.length).toBeGreaterThan(0);
    // Today's core-dump protection does not depend on the addon (prlimit on Linux).
    if (process.platform === 'linux') expect(status.daemon.hardening!.coreLimitZero).toBe(true);

    const doctor = await run(process.execPath, [kb.cli, 'doctor', '--no-fetch', '--json'], { env: d.env });
    const parsed = JSON.parse(doctor.stdout) as { checks?: DoctorCheck[] } | DoctorCheck[];
    const checks = Array.isArray(parsed) ? parsed : (parsed.checks ?? []);
    const check = checks.find((c) => c.id === 'daemon-hardening');
    expect(check).toMatchObject({ status: 'warn' });
    // The fix is the command that builds it (this copy is the user's to write).
    expect(check!.fix).toContain('keybroker build-native');
  });
});
