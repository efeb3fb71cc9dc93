#!/usr/bin/env node
// keybroker: the daemon and the CLI to run, inspect and refresh it.
import type { Command } from 'commander';
import { registerAudit } from './audit-command.js';
import { registerBuildNative } from './build-native-command.js';
import { registerCompletion } from './completion-command.js';
import { registerConfig } from './config-command.js';
import { registerDaemon } from './daemon-command.js';
import { registerDoctor } from './doctor-command.js';
import { registerForget } from './forget-command.js';
import { registerGet } from './get-command.js';
import { registerInit } from './init-command.js';
import { registerKey } from './key-command.js';
import { registerLogs } from './logs-command.js';
import { newProgram, runProgram } from './program.js';
import { registerRefresh } from './refresh-command.js';
import { registerReload } from './reload-command.js';
import { registerRestart } from './restart-command.js';
import { registerRun } from './run-command.js';
import { registerService } from './service-command.js';
import { registerSetup } from './setup-command.js';
import { registerStatus } from './status-command.js';
import { registerStop } from './stop-command.js';

export function buildProgram(): Command {
  const program = newProgram();
  registerInit(program);
  registerDaemon(program);
  registerGet(program);
  registerRun(program);
  registerRefresh(program);
  registerForget(program);
  registerReload(program);
  registerStop(program);
  registerRestart(program);
  registerStatus(program);
  registerLogs(program);
  registerConfig(program);
  registerKey(program);
  registerService(program);
  registerSetup(program);
  registerDoctor(program);
  registerBuildNative(program);
  registerAudit(program);
  registerCompletion(program);
  program.addHelpText(
    'after',
    `
Quick start:
  keybroker init                   set everything up: where the key is, Claude Code, a check (asks)
  keybroker key set default        store the key in the OS keychain (a keyring: profile; asks for it)
  keybroker setup claude           point Claude Code's apiKeyHelper at keybroker-shim
  keybroker setup claude --adopt   make the apiKeyHelper you have a profile, then point it at keybroker
  keybroker doctor                 which credential Claude Code will use, and what to fix
  keybroker status                 what is cached, how fresh, what failed
  keybroker reload                 re-read the config in the running daemon
  keybroker run -e VAR=PROFILE -- COMMAND   run any program with a key in its environment
  keybroker forget --all           drop every cached key from the daemon's memory now
  keybroker restart                replace the running daemon with this build (after an upgrade)
  keybroker audit --since 1h       which process got which key, from where
  keybroker completion bash        shell completion (bash, zsh, fish; see its --help to install)

The daemon: you do not start it yourself. keybroker-shim starts one in the background when none
answers (autostart; KEYBROKER_NO_AUTOSTART=1 turns that off), logging to daemon.log beside the socket.
  keybroker service install        keep one running instead: a systemd user service / launchd agent
  keybroker daemon                 run one in the foreground, logging to the terminal
  keybroker logs -f                its log, as readable lines (daemon.log or the journal)
  keybroker stop                   stop it (through systemd when it runs it)

Claude Code runs: keybroker-shim [PROFILE]   (prints the key; see keybroker-shim --help)`,
  );
  return program;
}

process.exitCode = await runProgram(buildProgram());
