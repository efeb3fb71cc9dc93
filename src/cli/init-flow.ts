// keybroker init, step by step (registered in init-command.ts, loaded when it runs):
//
//   1. where the key is: a flag, else a question on the terminal (paste it, 1Password, Vault,
//      AWS, a command, or the apiKeyHelper Claude Code runs now);
//   2. a pasted key goes into the OS keychain where one answers, else a 0600 file;
//   3. the config as it would be written is loaded and the profile fetched once, here
//      (profile-check.ts): its fingerprint is shown, never the key; nothing is written when it fails;
//   4. the config is written (a backup of one that was there) and a running daemon reloads it;
//   5. Claude Code's apiKeyHelper, the service, and doctor's verdict.
//
// Without a terminal nothing is asked: every answer comes from a flag, or from --yes's defaults,
// and a missing one is a usage error before anything is done.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sendRequest } from '../client/client.js';
import { collapseHome, resolveSocketPath } from '../client/socket-path.js';
import { ConfigError, MAX_CONFIG_BYTES, readConfigFile, resolveConfigPath } from '../config/load.js';
import { configWithProfile, existingProfile, type ProfileEntry } from '../config/profile-edit.js';
import { PROFILE_NAME } from '../config/schema.js';
import { chooseStarterSource, type StarterSource } from '../config/starter.js';
import { BrokerError } from '../errors.js';
import { waitingFor } from '../integration/claude-adopt.js';
import { readSettingsFile, settingsPath } from '../integration/claude-settings.js';
import { reloadDaemon } from '../integration/daemon-reload.js';
import { replaceFile } from '../integration/file-replace.js';
import { describeHelper, parseKeybrokerHelper } from '../integration/helper-command.js';
import { fingerprintOf, ProfileChecker } from '../integration/profile-check.js';
import { handToDaemon, openSource, type KeyTarget } from '../integration/profile-key.js';
import type { SecretValue } from '../secret.js';
import { doctorChecks } from './doctor-command.js';
import type { InitOptions } from './init-command.js';
import { CliExit } from './output.js';
import { coloursFor } from './colour.js';
import { startProgress } from './progress.js';
import { terminal, type Terminal } from './prompt.js';
import { KeyInputCancelled, readKey } from './secret-input.js';
import { hostFromProcess, out as serviceOut } from './service-command.js';
import { adoptFromCli, setupClaudeFromCli } from './setup-command.js';

interface Init {
  opts: InitOptions;
  socketFlag: string | undefined;
  env: NodeJS.ProcessEnv;
  home: string;
  configFile: string;
  profile: string;
  /** Questions go here; undefined: nothing is asked (no terminal, or --yes). */
  ask: Terminal | undefined;
  /** The exit status of the first later step that failed (setup claude, the service). */
  exit: number | undefined;
  keychain?: Promise<StarterSource>;
}

/** Claude Code's apiKeyHelper in the user's settings, as it is now. */
interface ClaudeHelper {
  file: string;
  command: string | undefined;
  ours: boolean;
}

type Choice =
  | { kind: 'paste' }
  | { kind: 'adopt' }
  | { kind: 'source'; uri: string; typed: false }
  | { kind: 'ask'; scheme: AskedScheme };
type AskedScheme = 'op' | 'vault' | 'aws-sm' | 'exec';

const say = (line: string): void => void process.stdout.write(`${line}\n`);

export async function runInit(opts: InitOptions, socketFlag: string | undefined): Promise<void> {
  try {
    await run(opts, socketFlag);
  } catch (err) {
    if (err instanceof KeyInputCancelled) throw new CliExit(130);
    throw err;
  }
}

async function run(opts: InitOptions, socketFlag: string | undefined): Promise<void> {
  const tty = Boolean(process.stdin.isTTY);
  requireAnswers(opts, tty);
  const profile = opts.profile ?? 'default';
  if (!PROFILE_NAME.test(profile))
    throw new BrokerError('USAGE', `"${profile}" is not a profile name: use letters, digits, ".", "_" and "-"`);
  const init: Init = {
    opts,
    socketFlag,
    env: process.env,
    home: os.homedir(),
    configFile: resolveConfigPath({ flag: opts.config }).path,
    profile,
    ask: tty && !opts.yes ? terminal() : undefined,
    exit: undefined,
  };
  const helper = await claudeHelper(init);
  const choice = await chooseSource(init, helper);
  if (choice.kind === 'adopt') {
    await adoptFromCli(
      {
        helper: 'api-key',
        ...(opts.profile !== undefined && { profile }),
        ...(opts.config && { config: opts.config }),
      },
      socketFlag,
    );
  } else {
    await profileStep(init, choice);
    await claudeStep(init, helper);
  }
  await serviceStep(init);
  await doctorStep(init);
  if (init.exit !== undefined) throw new CliExit(init.exit);
}

/** Without a terminal every answer must come from a flag (or --yes): said before anything is done. */
function requireAnswers(opts: InitOptions, tty: boolean): void {
  if (opts.adopt && opts.setupClaude === false)
    throw new BrokerError(
      'USAGE',
      "--adopt switches Claude Code's apiKeyHelper: it does not go with --no-setup-claude",
    );
  if (tty) return;
  const missing: string[] = [];
  if (!opts.source && !opts.paste && !opts.adopt)
    missing.push('where the key is: --source URI, --paste (the key on stdin) or --adopt');
  if (!opts.yes) {
    if (opts.setupClaude === undefined && !opts.adopt) missing.push('--setup-claude or --no-setup-claude');
    if (opts.service === undefined) missing.push('--service or --no-service');
  }
  if (missing.length === 0) return;
  throw new BrokerError('USAGE', 'keybroker init asks its questions on a terminal, and stdin is not one', {
    fix: `give ${missing.join('; ')}${opts.yes ? '' : ' — or --yes for the defaults'} (keybroker init --help)`,
  });
}

async function claudeHelper(init: Init): Promise<ClaudeHelper> {
  const file = settingsPath({ env: init.env, home: init.home, cwd: process.cwd(), platform: process.platform }, 'user');
  const settings = await readSettingsFile('user', file);
  const value = settings.data?.apiKeyHelper;
  const command = typeof value === 'string' && value !== '' ? value : undefined;
  return { file, command, ours: command !== undefined && parseKeybrokerHelper(command) !== undefined };
}

function probeKeychain(init: Init): Promise<StarterSource> {
  if (!init.keychain) {
    const done = startProgress('looking for the OS keychain');
    init.keychain = chooseStarterSource(init.env).finally(done);
  }
  return init.keychain;
}

// ---- 1. where the key is ----

async function chooseSource(init: Init, helper: ClaudeHelper): Promise<Choice> {
  const { opts } = init;
  if (opts.adopt) return { kind: 'adopt' };
  if (opts.paste) return { kind: 'paste' };
  if (opts.source !== undefined) return { kind: 'source', uri: opts.source, typed: false };
  const foreign = helper.command !== undefined && !helper.ours;
  const keychain = await probeKeychain(init);
  const choices: Array<[string, Choice]> = [
    [
      `paste it now (kept in ${keychain.kind === 'keyring' ? `the OS keychain: ${keychain.what}` : 'a file only you can read'}; nothing you paste is shown)`,
      { kind: 'paste' },
    ],
    ['1Password: a secret reference, op://VAULT/ITEM/FIELD', { kind: 'ask', scheme: 'op' }],
    ['HashiCorp Vault: vault://MOUNT/PATH#FIELD', { kind: 'ask', scheme: 'vault' }],
    ['AWS Secrets Manager: aws-sm://SECRET-ID', { kind: 'ask', scheme: 'aws-sm' }],
    ['a command that prints it (pass, gopass, a script …)', { kind: 'ask', scheme: 'exec' }],
  ];
  if (foreign)
    choices.push([
      `the apiKeyHelper Claude Code runs now (${describeHelper(helper.command!)}): adopt it`,
      { kind: 'adopt' },
    ]);
  const fallback = foreign ? choices.length - 1 : 0;
  if (!init.ask) return choices[fallback]![1];
  const at = await init.ask.choose(
    `Where does the Anthropic API key for profile "${init.profile}" live?`,
    choices.map(([label]) => label),
    fallback,
  );
  return choices[at]![1];
}

const ASK: Record<AskedScheme, string> = {
  op: '1Password secret reference (op://VAULT/ITEM/FIELD; in the app, a field\'s menu > "Copy Secret Reference"): ',
  vault: 'Vault secret and field (vault://MOUNT/PATH#FIELD, as in: vault kv get -field=FIELD MOUNT/PATH): ',
  'aws-sm':
    'AWS Secrets Manager secret (aws-sm://SECRET-ID, or aws-sm://SECRET-ID#JSON-KEY for one key of a JSON secret): ',
  exec: 'Command that prints the key (run with sh -c, e.g. pass show anthropic): ',
};

async function askSource(ask: Terminal, scheme: AskedScheme): Promise<string> {
  for (;;) {
    const answer = await ask.ask(ASK[scheme]);
    if (answer === '') continue;
    if (scheme === 'exec') return answer.startsWith('exec:') ? answer : `exec:${answer}`;
    return answer.startsWith(`${scheme}://`) ? answer : `${scheme}://${answer.replace(/^[a-z-]+:\/\//, '')}`;
  }
}

/** A source for a person to read: an exec: command by its program only (its arguments may be a key). */
function printable(source: string): string {
  return source.startsWith('exec:') ? `exec:${describeHelper(source.slice('exec:'.length))}` : source;
}

// ---- 2-4. the key, the check, the config ----

interface Pasted {
  value: SecretValue;
  /** keyring: the keychain entry, stored; file: the key file, written. */
  target: KeyTarget | undefined;
}

async function profileStep(init: Init, choice: Exclude<Choice, { kind: 'adopt' }>): Promise<void> {
  const checker = new ProfileChecker({ env: init.env, home: init.home });
  let pasted: Pasted | undefined;
  try {
    const existing = await readExisting(init, checker);
    let entry: ProfileEntry;
    let text: string;
    if (choice.kind === 'paste') {
      const destination = await pasteDestination(init, existing);
      entry = { source: destination.source };
      await confirmReplace(init, existing, entry);
      pasted = await takeKey(init, destination);
      text = configWithProfile(existing, init.profile, entry, { replace: true, comment: 'written by keybroker init' });
    } else {
      ({ entry, text } = await sourceEntry(init, checker, existing, choice));
    }
    await checkProfile(init, checker, text, pasted?.value);
    await writeConfig(init, existing, text, entry);
    await tellDaemon(init, pasted, existing !== undefined && existingProfile(existing, init.profile) !== undefined);
  } finally {
    await pasted?.target?.close();
    await checker.close();
  }
}

/** The config there now (undefined: none); one with errors is refused, never rewritten. */
async function readExisting(init: Init, checker: ProfileChecker): Promise<string | undefined> {
  let text: string;
  try {
    text = await readConfigFile(init.configFile);
  } catch (err) {
    if (err instanceof ConfigError && err.missing) return undefined;
    throw err;
  }
  await checker.load(init.configFile, text);
  return text;
}

/** A --source or a typed one, with the config it makes: a typed one that does not parse is asked again. */
async function sourceEntry(
  init: Init,
  checker: ProfileChecker,
  existing: string | undefined,
  choice: Extract<Choice, { kind: 'source' | 'ask' }>,
): Promise<{ entry: ProfileEntry; text: string }> {
  for (;;) {
    const source = choice.kind === 'source' ? choice.uri : await askSource(init.ask!, choice.scheme);
    const entry = { source };
    await confirmReplace(init, existing, entry);
    const text = configWithProfile(existing, init.profile, entry, {
      replace: true,
      comment: 'written by keybroker init',
    });
    try {
      await checker.load(init.configFile, text);
      return { entry, text };
    } catch (err) {
      if (!(err instanceof ConfigError) || choice.kind === 'source') throw err;
      for (const p of err.problems) process.stderr.write(`${p.message}\n`);
    }
  }
}

/** A profile of that name that reads another source is replaced only when the user says so. */
async function confirmReplace(init: Init, existing: string | undefined, entry: ProfileEntry): Promise<void> {
  const current = existing === undefined ? undefined : existingProfile(existing, init.profile);
  if (!current || current.source === entry.source || init.opts.force) return;
  const what = `profile "${init.profile}" in ${collapseHome(init.configFile, init.home)} reads ${current.source === undefined ? 'no source' : printable(current.source)}`;
  if (init.ask && (await init.ask.confirm(`${what}. Replace it? (the config is backed up first)`, false))) return;
  throw new BrokerError('USAGE', `${what}: keybroker init leaves it as it is`, {
    fix: 'pick another name with --profile, or replace it with --force (the config is backed up first)',
  });
}

interface Destination {
  source: string;
  /** The key file, when there is no keychain. */
  file?: string;
  where: string;
}

/** The keychain where a real one answers, else a 0600 file beside the config. */
async function pasteDestination(init: Init, existing: string | undefined): Promise<Destination> {
  const keychain = await probeKeychain(init);
  if (keychain.kind === 'keyring')
    return { source: `keyring:${init.profile}`, where: `the OS keychain (${keychain.what})` };
  const file = path.join(
    path.dirname(init.configFile),
    init.profile === 'default' ? 'anthropic-key' : `${init.profile}-key`,
  );
  const source = `file:${collapseHome(file, init.home)}`;
  const readsIt = existing !== undefined && existingProfile(existing, init.profile)?.source === source;
  if (fs.existsSync(file) && !readsIt && !init.opts.force) {
    const what = `${collapseHome(file, init.home)} exists`;
    if (!(init.ask && (await init.ask.confirm(`${what}. Replace the key in it?`, false))))
      throw new BrokerError('USAGE', `${what}, and keybroker init does not replace it without --force`, {
        fix: 'remove it, or replace it with --force',
      });
  }
  return {
    source,
    file,
    where: `${collapseHome(file, init.home)}, a file only you can read (${keychain.why ?? 'no keychain here'})`,
  };
}

/** Read the key (a hidden prompt, or stdin) and put it where the profile will read it. */
async function takeKey(init: Init, destination: Destination): Promise<Pasted> {
  const value = await readKey(`Key for profile "${init.profile}" (kept in ${destination.where}; nothing is shown): `);
  if (destination.file !== undefined) {
    writeKeyFile(destination.file, value);
    say(`stored the key in ${destination.where}`);
    return { value, target: undefined };
  }
  const target = await openSource(destination.source, init.profile, { env: init.env });
  try {
    const done = startProgress(`storing the key in ${destination.where}`);
    try {
      await target.store(value);
    } finally {
      done();
    }
  } catch (err) {
    await target.close();
    throw err;
  }
  say(`stored the key in ${destination.where}`);
  return { value, target };
}

/** The key, then a newline, in a file created 0600 and renamed into place: never readable by others. */
function writeKeyFile(file: string, value: SecretValue): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.keybroker-${process.pid}.tmp`;
  const fd = fs.openSync(
    tmp,
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
    0o600,
  );
  try {
    value.peek((bytes) => fs.writeSync(fd, bytes));
    fs.writeSync(fd, '\n');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Step 3: fetch the profile as written in `text`, once; show the fingerprint. Throws with nothing written. */
async function checkProfile(
  init: Init,
  checker: ProfileChecker,
  text: string,
  pasted: SecretValue | undefined,
): Promise<void> {
  const loaded = await checker.load(init.configFile, text);
  const source = loaded.profiles.get(init.profile)?.source ?? '';
  const done = startProgress(
    `checking profile "${init.profile}": reading ${printable(source)} ${waitingFor(source)}`.trimEnd(),
  );
  let checked;
  try {
    checked = await checker.fetch(loaded, init.profile);
  } catch (err) {
    done();
    process.stderr.write('keybroker: the check failed, so the config was not written\n');
    throw err instanceof BrokerError && err.profile === undefined ? err.with({ profile: init.profile }) : err;
  }
  done();
  if (pasted && !checked.value.equals(pasted))
    throw new BrokerError('SOURCE_ERROR', `${checked.description} gave back another value than the one stored`, {
      profile: init.profile,
    });
  const fp = await fingerprintOf(checked.value, init.env, init.home);
  say(
    `checked: ${checked.description} answered in ${checked.ms} ms; the key's fingerprint is ${fp.fingerprint}${fp.audit ? ' (keybroker audit shows the same)' : ''}`,
  );
}

async function writeConfig(init: Init, existing: string | undefined, text: string, entry: ProfileEntry): Promise<void> {
  const file = collapseHome(init.configFile, init.home);
  if (text === existing) {
    say(`${file} has profile "${init.profile}" reading ${printable(entry.source)} already: unchanged`);
    return;
  }
  const written = await replaceFile(init.configFile, text, {
    now: new Date(),
    original: existing,
    maxBytes: MAX_CONFIG_BYTES,
  });
  say(`${written.created ? 'wrote' : 'changed'} ${file}: profile "${init.profile}" reads ${printable(entry.source)}`);
  if (written.backup) say(`backup: ${collapseHome(written.backup, init.home)}`);
}

/** A running daemon reloads the config; a pasted key is handed to it (keychain) or re-read (file). */
async function tellDaemon(init: Init, pasted: Pasted | undefined, profileExisted: boolean): Promise<void> {
  const socket = resolveSocketPath({ flag: init.socketFlag }).path;
  const reload = await reloadDaemon(socket).catch((err: unknown) => {
    process.stderr.write(
      `keybroker: warning: the running daemon did not reload: ${err instanceof BrokerError ? err.message : 'error'}\n`,
    );
    return undefined;
  });
  if (!reload || reload.daemon === 'not-running') return;
  if (reload.daemon === 'refused') {
    process.stderr.write(
      `keybroker: warning: the running daemon (pid ${reload.pid}) refused the config: ${reload.error.split('\n')[0]}\n`,
    );
    return;
  }
  if (path.resolve(reload.config) !== path.resolve(init.configFile))
    process.stderr.write(
      `keybroker: warning: the running daemon (pid ${reload.pid}) reads ${reload.config}, not ${init.configFile}\n`,
    );
  say(`the running daemon (pid ${reload.pid}) reloaded its config`);
  if (!pasted) return;
  if (pasted.target) {
    const outcome = await handToDaemon(pasted.target, pasted.value, socket);
    if (outcome.daemon === 'updated') say('the running daemon serves the new key now');
  } else if (profileExisted) {
    // Same profile, same file, a new key in it: the value the daemon holds is the old one.
    await sendRequest(socket, { v: 1, op: 'forget', profile: init.profile }, { timeoutMs: 5_000 });
  }
}

// ---- 5. Claude Code, the service, doctor ----

function failed(init: Init, err: unknown): void {
  if (err instanceof CliExit) init.exit ??= err.exitCode;
  else if (err instanceof BrokerError) {
    process.stderr.write(`keybroker: ${err.message}${err.fix ? ` — ${err.fix}` : ''}\n`);
    init.exit ??= err.exitCode;
  } else throw err;
}

async function claudeStep(init: Init, helper: ClaudeHelper): Promise<void> {
  const file = collapseHome(helper.file, init.home);
  const want =
    init.opts.setupClaude ??
    (init.ask ? await init.ask.confirm(`Point Claude Code at keybroker (apiKeyHelper in ${file})?`, true) : true);
  if (!want) {
    say(
      `Claude Code: left as it is (later: keybroker setup claude${init.profile === 'default' ? '' : ` --profile ${init.profile}`})`,
    );
    return;
  }
  let force = false;
  if (helper.command !== undefined && !helper.ours) {
    const shown = describeHelper(helper.command);
    force =
      Boolean(init.opts.force) ||
      (init.ask !== undefined &&
        (await init.ask.confirm(
          `Claude Code's apiKeyHelper runs ${shown} now. Replace it with keybroker-shim? (a backup is kept)`,
          false,
        )));
    if (!force) {
      say(
        `Claude Code: apiKeyHelper still runs ${shown}; replace it with keybroker setup claude --force, or make it a profile: keybroker setup claude --adopt`,
      );
      return;
    }
  }
  try {
    await setupClaudeFromCli({
      helper: 'api-key',
      ...(init.profile !== 'default' && { profile: init.profile }),
      ...(init.opts.config && { config: init.opts.config }),
      force,
    });
  } catch (err) {
    failed(init, err);
  }
}

async function serviceStep(init: Init): Promise<void> {
  const kind = process.platform === 'darwin' ? 'a launchd agent' : 'a systemd user service';
  const want =
    init.opts.service ??
    (init.ask
      ? await init.ask.confirm(
          `Run the daemon as ${kind}, started at login? (Without it, keybroker-shim starts the daemon on first use.)`,
          false,
        )
      : false);
  if (!want) return;
  try {
    const { installService } = await import('../integration/service-manager.js');
    await installService(await hostFromProcess(false), { dryRun: false, out: serviceOut });
  } catch (err) {
    failed(init, err);
  }
}

async function doctorStep(init: Init): Promise<void> {
  const [checks, { renderDoctor }] = await Promise.all([
    doctorChecks({ configFlag: init.opts.config, socketFlag: init.socketFlag, fetchProfiles: false }),
    import('../integration/doctor.js'),
  ]);
  const notOk = checks.filter((c) => c.status !== 'ok');
  say(`keybroker doctor (${checks.length} checks; keybroker doctor shows each):`);
  process.stdout.write(
    notOk.length === 0 ? 'all good\n' : renderDoctor(notOk, coloursFor(process.stdout)).replace(/^\n/, ''),
  );
}
