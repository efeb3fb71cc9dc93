// doctor and Claude Code's managed settings: Claude Code takes the first managed source present
// (server-managed, then on macOS an MDM plist, then managed-settings.json with its drop-ins) and
// ignores the others; doctor must not report a helper from a managed file Claude Code ignores.
import fs from 'node:fs';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { runDoctor, type DoctorCheck } from '../../src/integration/doctor.js';
import { VERSION } from '../../src/version.js';
import { privateTempDir, SHIM } from '../helpers/daemon.js';

let home: string;

beforeEach(() => {
  home = privateTempDir('kb-doc-managed-');
  fs.mkdirSync(path.join(home, 'project'));
  fs.mkdirSync(path.join(home, '.claude'));
  fs.writeFileSync(path.join(home, '.claude', 'settings.json'), JSON.stringify({ apiKeyHelper: `${SHIM} mine` }));
  fs.mkdirSync(path.join(home, 'managed'));
  fs.writeFileSync(
    path.join(home, 'managed', 'managed-settings.json'),
    JSON.stringify({ apiKeyHelper: `${SHIM} org` }),
  );
  fs.mkdirSync(path.join(home, '.config', 'keybroker'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(
    path.join(home, '.config', 'keybroker', 'config.yaml'),
    'profiles:\n  mine:\n    source: env:X\n  org:\n    source: env:Y\n',
    { mode: 0o600 },
  );
});

function doctor(platform: NodeJS.Platform = 'linux'): Promise<DoctorCheck[]> {
  return runDoctor({
    env: { HOME: home, USER: 'ada', PATH: process.env.PATH!, XDG_RUNTIME_DIR: path.join(home, 'run') },
    home,
    cwd: path.join(home, 'project'),
    platform,
    managedDir: path.join(home, 'managed'),
    managedPreferencesDir: path.join(home, 'Managed Preferences'),
    uid: process.getuid?.(),
    version: VERSION,
    fetchProfiles: false,
    requestTimeoutMs: 1_000,
  });
}

const credential = (checks: DoctorCheck[]): DoctorCheck => checks.find((c) => c.id === 'credential')!;

describe("doctor: managed settings in Claude Code's order", () => {
  it("managed-settings.json outranks the user's settings", async () => {
    const checks = await doctor();
    expect(credential(checks)).toMatchObject({ status: 'ok' });
    expect(credential(checks).message).toContain('keybroker profile "org"');
    expect(checks.filter((c) => c.id === 'settings')).toEqual([]);
  });

  it('cached server-managed settings make Claude Code ignore managed-settings.json', async () => {
    fs.writeFileSync(path.join(home, '.claude', 'remote-managed-settings.json'), '{}');
    const checks = await doctor();
    expect(credential(checks).message).toContain('keybroker profile "mine"');
    expect(checks.filter((c) => c.id === 'settings').map((c) => c.status)).toEqual(['warn']);
  });

  it('on macOS an MDM plist (per user, or for the device) makes Claude Code ignore managed-settings.json', async () => {
    for (const plist of [path.join('ada', 'com.anthropic.claudecode.plist'), 'com.anthropic.claudecode.plist']) {
      const file = path.join(home, 'Managed Preferences', plist);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, '');
      const checks = await doctor('darwin');
      expect(credential(checks).message).toContain('keybroker profile "mine"');
      expect(checks.filter((c) => c.id === 'settings').map((c) => c.status)).toEqual(['warn']);
      fs.rmSync(file);
    }
    // Linux has no MDM preferences: the same files there change nothing.
    fs.mkdirSync(path.join(home, 'Managed Preferences'), { recursive: true });
    fs.writeFileSync(path.join(home, 'Managed Preferences', 'com.anthropic.claudecode.plist'), '');
    expect(credential(await doctor('darwin')).message).toContain('"mine"');
    expect(credential(await doctor('linux')).message).toContain('"org"');
  });
});
