// `keybroker doctor`'s Codex checks: is there a Codex config, does the provider Codex uses run
// keybroker-shim for its key (and would the shim run), does the shim know Codex's refresh interval
// (else a re-run after a 401 is not recognised), and does anything take precedence over the
// auth command. Nothing is said when Codex is neither configured nor installed.
import { collapseHome } from '../client/socket-path.js';
import { BrokerError } from '../errors.js';
import type { ProfileSummary } from './config-summary.js';
import {
  activeProvider,
  AUTH_CONFLICTS,
  BUILT_IN_PROVIDERS,
  CODEX_AUTH_DEFAULTS,
  codexConfigPath,
  describeAuth,
  isTable,
  parseCodexConfig,
  parseKeybrokerAuth,
  providerAuth,
  providerTable,
  readCodexConfigText,
  type TomlTable,
} from './codex-config.js';
import type { DoctorCheck } from './doctor.js';
import { shimFileCheck } from './shim-file.js';
import { findOnPath } from './service-manager.js';

const SETUP = 'keybroker setup codex';

export interface CodexDoctorOptions {
  env: NodeJS.ProcessEnv;
  home: string;
  /** The keybroker config's profiles, when it could be read: the one the auth command names must exist. */
  profiles: ProfileSummary[] | undefined;
}

export async function codexChecks(options: CodexDoctorOptions): Promise<DoctorCheck[]> {
  const file = codexConfigPath(options);
  const shown = collapseHome(file, options.home);
  let data: TomlTable;
  try {
    const text = await readCodexConfigText(file);
    if (text === undefined) {
      const codex = await findOnPath('codex', options.env.PATH);
      if (!codex) return [];
      return [
        {
          id: 'codex-config',
          status: 'warn',
          message: `Codex is installed (${collapseHome(codex, options.home)}) but has no ${shown}, so it does not get its key from keybroker`,
          fix: `${SETUP} --provider NAME (then set model_provider = "NAME")`,
        },
      ];
    }
    data = parseCodexConfig(text, shown);
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err;
    return [
      {
        id: 'codex-config',
        status: 'fail',
        message: `${err.message}; Codex cannot use it`,
        fix: err.fix ?? 'fix it by hand',
      },
    ];
  }
  const active = activeProvider(data);
  const chosenBy =
    active.chosenBy === 'default'
      ? 'its default'
      : active.chosenBy === 'profile'
        ? `profile "${String(data.profile)}"`
        : 'model_provider';
  const checks: DoctorCheck[] = [
    {
      id: 'codex-config',
      status: 'ok',
      message: `Codex reads ${shown} and uses provider "${active.id}" (${chosenBy})`,
    },
  ];
  const ours = providersRunningShim(data);
  if (BUILT_IN_PROVIDERS.includes(active.id)) {
    checks.push({
      id: 'codex-auth',
      status: ours.length > 0 ? 'warn' : 'ok',
      message: `Codex uses its built-in provider "${active.id}", which takes its key from its own login or environment, not from keybroker${ours.length > 0 ? ` (${ours.map((p) => `"${p}"`).join(', ')} would: ${active.chosenBy === 'profile' ? 'that profile names' : 'model_provider names'} another)` : ''}`,
      ...(ours.length > 0
        ? { fix: `set model_provider = "${ours[0]}" in ${shown}` }
        : { fix: `${SETUP} --provider NAME, to have it use keybroker` }),
    });
    return checks;
  }
  const provider = providerTable(data, active.id);
  const key = `model_providers.${active.id}`;
  if (!provider) {
    checks.push({
      id: 'codex-auth',
      status: 'fail',
      message: `${shown} names provider "${active.id}", which it does not define: Codex refuses to start`,
      fix: `${SETUP} --provider ${active.id} (or define [${key}])`,
    });
    return checks;
  }
  const auth = providerAuth(provider);
  const keybroker = auth && parseKeybrokerAuth(auth);
  if (!auth || !keybroker) {
    checks.push({
      id: 'codex-auth',
      status: 'warn',
      message: auth
        ? `Codex's provider "${active.id}" gets its key from another command (${describeAuth(auth)}), not from keybroker`
        : `Codex's provider "${active.id}" has no auth command, so its key does not come from keybroker${typeof provider.env_key === 'string' ? ` (it reads $${provider.env_key})` : ''}`,
      fix: auth || AUTH_CONFLICTS.some((k) => provider[k] !== undefined) ? `${SETUP} --force` : SETUP,
    });
    return checks;
  }
  checks.push(...(await authChecks(active.id, provider, auth.refreshIntervalMs, keybroker, options)));
  return checks;
}

/** The checks of a provider whose auth command is keybroker-shim. */
async function authChecks(
  id: string,
  provider: TomlTable,
  configured: number | undefined,
  ours: NonNullable<ReturnType<typeof parseKeybrokerAuth>>,
  options: CodexDoctorOptions,
): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const conflicts = AUTH_CONFLICTS.filter((k) => provider[k] !== undefined && provider[k] !== false);
  if (conflicts.length > 0) {
    checks.push({
      id: 'codex-auth',
      status: 'fail',
      message: `Codex's provider "${id}" sets ${conflicts.join(', ')} beside its auth command: Codex refuses to start ("provider auth cannot be combined with ${conflicts[0]}")`,
      fix: `${SETUP} --force (removes ${conflicts.length === 1 ? 'it' : 'them'})`,
    });
    return checks;
  }
  const ran = await shimFileCheck(ours.shim, undefined, {
    id: 'codex-auth',
    who: `Codex's auth command for provider "${id}"`,
    program: 'Codex',
    setup: SETUP,
    env: options.env,
    home: options.home,
  });
  if ('check' in ran) return [ran.check];
  const serving = ours.profile === undefined ? 'the profile of its working directory' : `profile "${ours.profile}"`;
  checks.push({
    id: 'codex-auth',
    status: 'ok',
    message: `Codex's provider "${id}" runs the ${ran.native ? 'native' : 'Node'} keybroker-shim (${collapseHome(ran.shim, options.home)}) for ${serving}; no environment variable takes precedence over it (Codex reads none for a provider with an auth command)`,
  });
  if (ours.profile !== undefined && options.profiles && !options.profiles.some((p) => p.name === ours.profile)) {
    checks.push({
      id: 'codex-profile',
      status: 'fail',
      message: `Codex's auth command asks for profile "${ours.profile}", which the keybroker config does not have (profiles: ${options.profiles.map((p) => p.name).join(', ') || 'none'})`,
      fix: `add the profile, or: ${SETUP} --force --profile NAME`,
    });
  }
  const interval = configured ?? CODEX_AUTH_DEFAULTS.refreshIntervalMs;
  if (ours.refreshIntervalMs !== interval) {
    checks.push({
      id: 'codex-refresh',
      status: 'warn',
      message:
        ours.refreshIntervalMs === undefined
          ? `Codex's auth command does not pass --refresh-interval-ms, so keybroker cannot tell its run after a 401 from a scheduled one: a rotated key is not refetched at once`
          : `Codex re-runs its auth command every ${interval} ms, but tells the shim ${ours.refreshIntervalMs} ms (--refresh-interval-ms): a run after a 401 may be missed, or a scheduled one taken for one`,
      fix: SETUP,
    });
  }
  return checks;
}

/** The providers whose auth command is keybroker-shim. */
function providersRunningShim(data: TomlTable): string[] {
  const providers = isTable(data.model_providers) ? data.model_providers : {};
  return Object.keys(providers).filter((id) => {
    const auth = providerAuth(providerTable(data, id));
    return auth !== undefined && parseKeybrokerAuth(auth) !== undefined && !BUILT_IN_PROVIDERS.includes(id);
  });
}
