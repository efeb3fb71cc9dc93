// Which credential Claude Code will use, worked out the way Claude Code does from its environment
// and settings files (../../../shared/claude-code.md, "Precedence"):
//
//   CLAUDE_CODE_USE_BEDROCK / _VERTEX / _FOUNDRY  >  ANTHROPIC_AUTH_TOKEN  >  ANTHROPIC_API_KEY
//     >  apiKeyHelper  >  CLAUDE_CODE_OAUTH_TOKEN  >  subscription login
//
// The environment Claude Code runs with is the shell's, overlaid with the `env` blocks of its
// settings files (user < project < local < managed). A top-level setting such as apiKeyHelper comes
// from the highest-precedence file that sets it. Values are kept only to test them; nothing here
// returns a value for printing.
import type { SettingsFile, SettingsScope } from './claude-settings.js';

export interface EnvEntry {
  value: string;
  /** "environment", or the settings file whose env block sets it. */
  from: string;
  scope: SettingsScope | 'environment';
}

export interface SettingEntry {
  value: unknown;
  file: SettingsFile;
}

export interface ClaudeView {
  files: SettingsFile[];
  env: Map<string, EnvEntry>;
  /** The effective value of each top-level setting. */
  settings: Map<string, SettingEntry>;
  /** Every file that sets apiKeyHelper, lowest precedence first. */
  helperFiles: SettingsFile[];
}

/** `files` lowest precedence first, as readAllSettings returns them. */
export function claudeView(files: readonly SettingsFile[], shellEnv: NodeJS.ProcessEnv): ClaudeView {
  const env = new Map<string, EnvEntry>();
  for (const [name, value] of Object.entries(shellEnv))
    if (value !== undefined) env.set(name, { value, from: 'environment', scope: 'environment' });
  const settings = new Map<string, SettingEntry>();
  const helperFiles: SettingsFile[] = [];
  for (const file of files) {
    if (!file.data) continue;
    for (const [key, value] of Object.entries(file.data)) {
      if (key === 'env' && typeof value === 'object' && value !== null && !Array.isArray(value)) {
        for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
          if (v === undefined || v === null) continue;
          env.set(name, { value: String(v), from: file.path, scope: file.scope });
        }
      }
      settings.set(key, { value, file });
    }
    if (typeof file.data.apiKeyHelper === 'string' && file.data.apiKeyHelper.trim() !== '') helperFiles.push(file);
  }
  return { files: [...files], env, settings, helperFiles };
}

/** Claude Code's reading of a boolean environment variable. */
export function isEnvTruthy(value: string | undefined): boolean {
  return value !== undefined && ['1', 'true', 'yes', 'on'].includes(value.trim().toLowerCase());
}

export type CredentialKind =
  'bedrock' | 'vertex' | 'foundry' | 'auth-token' | 'api-key' | 'api-key-helper' | 'oauth-token' | 'subscription';

export const CLOUD_FLAGS = [
  { kind: 'bedrock', flag: 'CLAUDE_CODE_USE_BEDROCK', name: 'Amazon Bedrock' },
  { kind: 'vertex', flag: 'CLAUDE_CODE_USE_VERTEX', name: 'Google Vertex AI' },
  { kind: 'foundry', flag: 'CLAUDE_CODE_USE_FOUNDRY', name: 'Microsoft Foundry' },
] as const;

export interface CredentialChoice {
  kind: CredentialKind;
  /** "ANTHROPIC_API_KEY", "apiKeyHelper", "Amazon Bedrock" … */
  label: string;
  /** Where it comes from: "environment" or a settings file path; undefined for subscription login. */
  from: string | undefined;
}

/** Every credential Claude Code would find, in the order it prefers them. The first one wins. */
export function credentialCandidates(view: ClaudeView): CredentialChoice[] {
  const out: CredentialChoice[] = [];
  for (const c of CLOUD_FLAGS) {
    const e = view.env.get(c.flag);
    if (e && isEnvTruthy(e.value)) out.push({ kind: c.kind, label: `${c.name} (${c.flag})`, from: e.from });
  }
  for (const [kind, name] of [
    ['auth-token', 'ANTHROPIC_AUTH_TOKEN'],
    ['api-key', 'ANTHROPIC_API_KEY'],
  ] as const) {
    const e = view.env.get(name);
    if (e && e.value !== '') out.push({ kind, label: name, from: e.from });
  }
  const helper = view.settings.get('apiKeyHelper');
  if (helper && typeof helper.value === 'string' && helper.value.trim() !== '')
    out.push({ kind: 'api-key-helper', label: 'apiKeyHelper', from: helper.file.path });
  const oauth = view.env.get('CLAUDE_CODE_OAUTH_TOKEN');
  if (oauth && oauth.value !== '')
    out.push({ kind: 'oauth-token', label: 'CLAUDE_CODE_OAUTH_TOKEN', from: oauth.from });
  out.push({
    kind: 'subscription',
    label: 'your claude.ai subscription login (if you are signed in)',
    from: undefined,
  });
  return out;
}

export function chooseCredential(view: ClaudeView): CredentialChoice {
  return credentialCandidates(view)[0]!;
}
