import { spawnSync } from 'node:child_process';
import path from 'node:path';
import type { Command } from 'commander';
import { BrokerError } from '../errors.js';

export function registerBuildNative(program: Command): void {
  program
    .command('build-native')
    .description(
      "compile the native keybroker-shim and the daemon's hardening addon here (what npm's install script does, where npm did not run it)",
    )
    .addHelpText(
      'after',
      `
Runs scripts/build-native.mjs of this installation with this node and a C compiler ($CC, else
cc), writing dist/native/keybroker-shim beside the Node shim, and the daemon's hardening addon,
dist/native/keybroker-hardening.node (then: keybroker restart). npm runs the same build as the
package's install script; run this where it did not (npm install --ignore-scripts, or an npm that
holds back install scripts not covered by allow-scripts), after installing a compiler, or after
moving to another node. Then keybroker setup claude points apiKeyHelper at it.

Where keybroker was installed by root (a system-wide prefix), run it as root with the same node:
the line it prints says how.

Examples:
  keybroker build-native
  keybroker doctor --no-fetch     (the native-shim check says whether it is built)`,
    )
    .action(async () => {
      const [{ findInstallLayout }, { compilerHint, nativeShimState }] = await Promise.all([
        import('../integration/install-layout.js'),
        import('../integration/native-shim.js'),
      ]);
      const layout = findInstallLayout();
      const state = await nativeShimState(layout, process.env);
      if (!state.writable)
        throw new BrokerError(
          'PERMISSION_DENIED',
          `${path.dirname(layout.nativeShim)} is not yours to write (keybroker was installed by another user)`,
          { fix: `run: ${state.command}` },
        );
      if (!state.compiler)
        throw new BrokerError('NOT_FOUND', `no C compiler (${state.compilerName}) on PATH`, {
          fix: `install one (${compilerHint(process.platform)}), then run: keybroker build-native`,
        });
      // The script prints its one line (and a compiler's errors); it never fails on its own.
      spawnSync(process.execPath, [path.join(layout.root, 'scripts', 'build-native.mjs'), '--install'], {
        cwd: layout.root,
        stdio: 'inherit',
      });
      if (!(await nativeShimState(layout, process.env)).built)
        throw new BrokerError(
          'INTERNAL',
          'the native keybroker-shim was not built (the reason is above); keybroker-shim keeps running on Node',
          { fix: 'please report it' },
        );
      process.stdout.write(
        'keybroker setup claude now writes it into apiKeyHelper (run it again if you set up Claude Code before)\n',
      );
    });
}
