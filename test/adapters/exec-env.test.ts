// exec: commands run without the values other profiles read from the daemon's environment: the
// variables env: sources name are withheld, unless a profile lets them through (exec.passEnv).
// The real daemon, its real config load and real commands.
import { describe, expect, it } from 'vitest';
import { sharedDaemon } from '../helpers/daemon.js';

const SECRET = 'sk-env-profile-secret-61c2';
const probe = (name: string, fallback: string): string => `exec:printf '%s' "\${${name}:-${fallback}}"`;

describe("exec: sources and other profiles' environment variables", () => {
  const d = sharedDaemon({
    config: [
      'profiles:',
      '  default:',
      '    source: env:KB_EXEC_SECRET',
      '  probe:',
      `    source: ${probe('KB_EXEC_SECRET', 'withheld')}`,
      '  passed:',
      `    source: ${probe('KB_EXEC_SECRET', 'withheld')}`,
      '    exec:',
      '      passEnv: [KB_EXEC_SECRET]',
      '  plain:',
      `    source: ${probe('KB_EXEC_PLAIN', 'absent')}`,
      '',
    ].join('\n'),
    env: { KB_EXEC_SECRET: SECRET, KB_EXEC_PLAIN: 'plain-value' },
  });

  const get = async (profile: string): Promise<string> => {
    const r = await d.shim(profile);
    expect(r.code).toBe(0);
    return r.stdout.trim();
  };

  it('withholds a variable an env: profile reads', async () => {
    expect(await get('default')).toBe(SECRET);
    expect(await get('probe')).toBe('withheld');
  });

  it('lets it through where the profile lists it in exec.passEnv', async () => {
    expect(await get('passed')).toBe(SECRET);
  });

  it('leaves every other variable alone', async () => {
    expect(await get('plain')).toBe('plain-value');
  });

  it('refuses a passEnv that is not a list of variable names', async () => {
    d.writeConfig('profiles:\n  x:\n    source: exec:true\n    exec:\n      passEnv: [NOT-A-NAME]\n');
    const check = await d.cli(['config', 'check']);
    expect(check.code).toBe(8);
  });
});
