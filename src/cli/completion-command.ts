// `keybroker completion bash|zsh|fish`: shell completion generated from commander's command tree,
// so a new command or option completes without anyone editing a script. Profile names come from
// the config through a hidden `keybroker __complete profiles`, which reads the file and never
// talks to (or starts) a daemon.
import type { Command } from 'commander';
import { configOptionHelp } from './help-text.js';
import { die } from './output.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

/** The install line for each shell (docs/commands.md says the same). */
const INSTALL: Record<Shell, string> = {
  bash: 'keybroker completion bash > ~/.local/share/bash-completion/completions/keybroker',
  zsh: "echo 'source <(keybroker completion zsh)' >> ~/.zshrc   (after compinit)",
  fish: 'keybroker completion fish > ~/.config/fish/completions/keybroker.fish',
};

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script (commands, options, profile names)')
    .argument('<shell>', SHELLS.join(', '))
    .addHelpText(
      'after',
      `
Install:
  bash  ${INSTALL.bash}
  zsh   ${INSTALL.zsh}
  fish  ${INSTALL.fish}
Open a new shell afterwards. Profile names are read from the config ($KEYBROKER_CONFIG, else the
default path) when you press Tab; no daemon is needed.`,
    )
    .action((shell: string) => {
      if (!(SHELLS as readonly string[]).includes(shell))
        die('USAGE', `no completion for "${shell}": choose ${SHELLS.join(', ')}`);
      process.stdout.write(completionScript(shell as Shell, commandTree(program)));
    });
  program
    .command('__complete', { hidden: true })
    .description('print completion candidates (for the completion scripts)')
    .argument('<what>', 'profiles')
    .option('--config <file>', configOptionHelp())
    .action(async (what: string, opts: { config?: string }) => {
      if (what !== 'profiles') die('USAGE', `nothing to complete for "${what}"`);
      const { completeProfiles } = await import('../config/profile-names.js');
      const names = await completeProfiles(opts.config);
      if (names.length > 0) process.stdout.write(`${names.join('\n')}\n`);
    });
}

/** One command as completion needs it: how it is reached, and what may follow it. */
export interface CompletionNode {
  /** The words after `keybroker` that reach it ('' for keybroker itself). */
  path: string;
  description: string;
  subcommands: string[];
  /** Flags, long and short (`--json`, `-e`), with the global ones. */
  options: Array<{ flags: string[]; description: string; takesValue: boolean }>;
  /** Its positional argument is a profile name. */
  profileArgument: boolean;
}

/** Every visible command under `program`, from commander's own tree. */
export function commandTree(program: Command): CompletionNode[] {
  const help = { flags: ['--help', '-h'], description: 'show help', takesValue: false };
  // The program's own options work after any command (--socket, --no-color), except the version.
  const globals = optionsOf(program).filter((o) => !o.flags.includes('--version'));
  const nodes: CompletionNode[] = [];
  const visit = (cmd: Command, path: string): void => {
    const visible = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
    nodes.push({
      path,
      description: cmd.description(),
      subcommands: visible.map((c) => c.name()),
      options: [...optionsOf(cmd), ...(path === '' ? [] : globals), help],
      profileArgument: cmd.registeredArguments.some((a) => a.name() === 'profile'),
    });
    for (const c of visible) visit(c, path === '' ? c.name() : `${path} ${c.name()}`);
  };
  visit(program, '');
  return nodes;
}

function optionsOf(cmd: Command): CompletionNode['options'] {
  return cmd.options
    .filter((o) => !o.hidden)
    .map((o) => ({
      flags: [o.long, o.short].filter((f): f is string => f !== undefined),
      description: o.description,
      takesValue: o.required || o.optional,
    }));
}

function completionScript(shell: Shell, nodes: CompletionNode[]): string {
  return shell === 'fish' ? fishScript(nodes) : posixScript(shell, nodes);
}

/** Single-quoted for sh and fish: the words here are ours (command and flag names), but quote anyway. */
const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The tables both bash and zsh use: shell functions over `case`, one arm per command path. Kept
 * to what both shells run the same way.
 */
function caseTables(nodes: CompletionNode[]): string {
  const table = (name: string, value: (n: CompletionNode) => string): string => {
    const arms = nodes
      .map((n) => [n.path, value(n)] as const)
      .filter(([, v]) => v !== '')
      .map(([path, v]) => `    ${quote(path)}) echo ${quote(v)} ;;`);
    return `${name}() {\n  case "$1" in\n${arms.join('\n')}\n  esac\n}`;
  };
  return [
    table('_keybroker_subcommands', (n) => n.subcommands.join(' ')),
    table('_keybroker_options', (n) => n.options.flatMap((o) => o.flags).join(' ')),
    // Options whose next word is their value, not a command.
    table('_keybroker_value_options', (n) =>
      n.options
        .filter((o) => o.takesValue)
        .flatMap((o) => o.flags)
        .join(' '),
    ),
    table('_keybroker_profile_argument', (n) => (n.profileArgument ? 'yes' : '')),
  ].join('\n\n');
}

function posixScript(shell: 'bash' | 'zsh', nodes: CompletionNode[]): string {
  const head =
    shell === 'bash'
      ? `# keybroker completion for bash, generated by: keybroker completion bash\n# Install: ${INSTALL.bash}`
      : `# keybroker completion for zsh, generated by: keybroker completion zsh\n# Install: ${INSTALL.zsh}`;
  // $1: the program as typed; $2…: the words before the one being completed. Prints
  // "PATH<TAB>STATE": STATE is "value" after an option that takes one, "free" after --.
  const walk = `_keybroker_walk() {
  local kb_path="" kb_state="" kb_word
  shift
  for kb_word in "$@"; do
    if [ "$kb_state" = value ]; then kb_state=""; continue; fi
    if [ "$kb_state" = free ]; then continue; fi
    case "$kb_word" in
      --) kb_state=free ;;
      -*)
        case " $(_keybroker_value_options "$kb_path") " in
          *" $kb_word "*) kb_state=value ;;
        esac ;;
      *)
        case " $(_keybroker_subcommands "$kb_path") " in
          *" $kb_word "*) kb_path="\${kb_path:+$kb_path }$kb_word" ;;
        esac ;;
    esac
  done
  printf '%s\\t%s\\n' "$kb_path" "$kb_state"
}

# What to offer: options, subcommands or profile names; nothing (the shell's own files) otherwise.
_keybroker_candidates() {
  local kb_program="$1" kb_cur="$2" kb_prev="$3" kb_walked kb_path kb_state
  shift 3
  kb_walked="$(_keybroker_walk "$kb_program" "$@")"
  kb_path="\${kb_walked%%	*}"
  kb_state="\${kb_walked#*	}"
  if [ "$kb_state" = free ]; then return; fi
  if [ "$kb_state" = value ]; then
    if [ "$kb_prev" = --profile ]; then "$kb_program" __complete profiles 2>/dev/null; fi
    return
  fi
  case "$kb_cur" in
    -*) _keybroker_options "$kb_path" | tr ' ' '\\n'; return ;;
  esac
  local kb_subcommands
  kb_subcommands="$(_keybroker_subcommands "$kb_path")"
  if [ -n "$kb_subcommands" ]; then
    printf '%s\\n' "$kb_subcommands" | tr ' ' '\\n'
  elif [ -n "$(_keybroker_profile_argument "$kb_path")" ]; then
    "$kb_program" __complete profiles 2>/dev/null
  fi
}`;
  const hook =
    shell === 'bash'
      ? `_keybroker() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" kb_words
  kb_words="$(_keybroker_candidates "\${COMP_WORDS[0]}" "$cur" "$prev" "\${COMP_WORDS[@]:1:COMP_CWORD-1}")"
  local IFS=$'\\n'
  COMPREPLY=($(compgen -W "$kb_words" -- "$cur"))
}
complete -o bashdefault -o default -F _keybroker keybroker`
      : `_keybroker() {
  local -a kb_candidates
  kb_candidates=("\${(@f)$(_keybroker_candidates "\${words[1]}" "\${words[CURRENT]}" "\${words[CURRENT-1]}" "\${(@)words[2,CURRENT-1]}")}")
  if (( \${#kb_candidates} )) && [[ -n "\${kb_candidates[1]}" ]]; then
    compadd -- "\${kb_candidates[@]}"
  else
    _files
  fi
}
compdef _keybroker keybroker`;
  return `${head}\n\n${caseTables(nodes)}\n\n${walk}\n\n${hook}\n`;
}

const PROFILES = "'(keybroker __complete profiles 2>/dev/null)'";

function fishScript(nodes: CompletionNode[]): string {
  const lines = [
    '# keybroker completion for fish, generated by: keybroker completion fish',
    `# Install: ${INSTALL.fish}`,
    '',
    // The command path typed so far ("service status"), by the same walk as bash's.
    'function __keybroker_path',
    '    set -l tokens (commandline -opc)',
    '    set -l kb_path ""',
    '    set -l skip 0',
    '    for t in $tokens[2..-1]',
    '        if test $skip = 1',
    '            set skip 0',
    '            continue',
    '        end',
    '        if test "$t" = --',
    '            echo __free',
    '            return',
    '        end',
    '        if string match -q -- "-*" $t',
    '            contains -- $t (__keybroker_value_options "$kb_path"); and set skip 1',
    '            continue',
    '        end',
    '        if contains -- $t (__keybroker_subcommands "$kb_path")',
    '            set kb_path (string trim -- "$kb_path $t")',
    '        end',
    '    end',
    '    echo $kb_path',
    'end',
    '',
    'function __keybroker_subcommands',
    '    switch "$argv[1]"',
    ...nodes
      .filter((n) => n.subcommands.length > 0)
      .flatMap((n) => [
        `        case ${quote(n.path)}`,
        `            printf '%s\\n' ${n.subcommands.map(quote).join(' ')}`,
      ]),
    '    end',
    'end',
    '',
    'function __keybroker_value_options',
    '    switch "$argv[1]"',
    ...nodes.flatMap((n) => {
      const flags = n.options.filter((o) => o.takesValue).flatMap((o) => o.flags);
      return flags.length > 0
        ? [`        case ${quote(n.path)}`, `            printf '%s\\n' ${flags.map(quote).join(' ')}`]
        : [];
    }),
    '    end',
    'end',
    '',
    'complete -c keybroker -f',
  ];
  for (const n of nodes) {
    const at = `'test (__keybroker_path) = "${n.path}"'`;
    for (const sub of n.subcommands) {
      const child = nodes.find((c) => c.path === (n.path === '' ? sub : `${n.path} ${sub}`));
      lines.push(`complete -c keybroker -n ${at} -a ${quote(sub)} -d ${quote(child?.description ?? '')}`);
    }
    for (const o of n.options) {
      const parts = o.flags.map((f) => (f.startsWith('--') ? `-l ${f.slice(2)}` : `-s ${f.slice(1)}`));
      const value = o.flags.includes('--profile') ? ` -x -a ${PROFILES}` : o.takesValue ? ' -r' : '';
      lines.push(`complete -c keybroker -n ${at} ${parts.join(' ')}${value} -d ${quote(o.description)}`);
    }
    if (n.profileArgument) lines.push(`complete -c keybroker -n ${at} -a ${PROFILES} -d profile`);
  }
  return `${lines.join('\n')}\n`;
}
