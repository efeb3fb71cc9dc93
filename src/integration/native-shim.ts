// The native shim (dist/native/keybroker-shim) is compiled on the machine that runs it, by
// scripts/build-native.mjs: by npm's install script where npm runs it, else by
// `keybroker build-native` (docs/install.md, "How native parts ship"). What doctor and that
// command need to know: is it built, is there a compiler, may this user write the package
// directory, and the one command that builds it here.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { DoctorCheck } from './doctor.js';
import type { InstallLayout } from './install-layout.js';
import { shellQuote } from './helper-command.js';
import { findOnPath } from './service-manager.js';

export interface NativeShimState {
  built: boolean;
  /** What build-native.mjs runs: $CC, else cc. */
  compilerName: string;
  /** Where that compiler is, if it is there at all. */
  compiler: string | undefined;
  /** This user may write where the build puts it (else the package belongs to another user, e.g. root). */
  writable: boolean;
  /** The command that builds it, as this user types it. */
  command: string;
}

export async function nativeShimState(
  layout: InstallLayout,
  env: NodeJS.ProcessEnv,
  node: string = process.execPath,
): Promise<NativeShimState> {
  const compilerName = env.CC || 'cc';
  const compiler = compilerName.includes('/')
    ? (await canAccess(compilerName, fs.constants.X_OK))
      ? compilerName
      : undefined
    : await findOnPath(compilerName, env.PATH);
  const nativeDir = path.dirname(layout.nativeShim);
  // The build removes the old binary and renames the new one into dist/native/, creating it first.
  const target = (await canAccess(nativeDir, fs.constants.F_OK)) ? nativeDir : path.dirname(nativeDir);
  const writable = await canAccess(target, fs.constants.W_OK);
  return {
    built: await canAccess(layout.nativeShim, fs.constants.X_OK),
    compilerName,
    compiler,
    writable,
    // Run as root with this very node: the native shim hands over to the node that built it.
    command: writable ? 'keybroker build-native' : `sudo ${shellQuote(node)} ${shellQuote(layout.entry)} build-native`,
  };
}

/** What to install for a C compiler, by platform. */
export function compilerHint(platform: NodeJS.Platform): string {
  return platform === 'darwin'
    ? 'xcode-select --install'
    : 'e.g. apt install gcc libc6-dev, dnf install gcc, apk add gcc musl-dev';
}

/** doctor's `native-shim` check: a missing native shim is slower, not broken, so at most a warning. */
export function nativeShimCheck(state: NativeShimState, platform: NodeJS.Platform, shown: string): DoctorCheck {
  if (state.built) return { id: 'native-shim', status: 'ok', message: `the native keybroker-shim is built (${shown})` };
  const message = `the native keybroker-shim is not built (${shown}): apiKeyHelper runs the Node shim, which does everything but starts Node on every call (50-100 ms instead of about 1 ms)`;
  if (!state.compiler)
    return {
      id: 'native-shim',
      status: 'warn',
      message: `${message}; no C compiler (${state.compilerName}) is on PATH`,
      fix: `install a C compiler (${compilerHint(platform)}), then run: ${state.command}`,
    };
  return {
    id: 'native-shim',
    status: 'warn',
    message: `${message}; npm did not run keybroker's install script, or it could not build it`,
    fix: state.command,
  };
}

async function canAccess(file: string, mode: number): Promise<boolean> {
  return fs.access(file, mode).then(
    () => true,
    () => false,
  );
}
