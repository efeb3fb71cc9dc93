// Help wording shared by several commands, so every --help says the same thing the same way.

/** Where the config is when --config is not given (resolveConfigPath's rules, in its order). */
export const CONFIG_DEFAULT =
  '$KEYBROKER_CONFIG, else $XDG_CONFIG_HOME/keybroker/config.yaml (~/.config/keybroker/config.yaml when XDG_CONFIG_HOME is unset)';

export function configOptionHelp(what = 'config file'): string {
  return `${what} (default: ${CONFIG_DEFAULT})`;
}
