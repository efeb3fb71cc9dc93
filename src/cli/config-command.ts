import type { Command } from 'commander';
import { formatDuration } from '../duration.js';
import { die } from './output.js';
import { configOptionHelp } from './help-text.js';

export function registerConfig(program: Command): void {
  const config = program.command('config').description('work with the config file');
  config
    .command('check')
    .description('validate the config file offline: YAML, keys, durations, every source URI and the directories: map')
    .option('--config <file>', configOptionHelp())
    .addHelpText(
      'after',
      `
Prints each problem as FILE:LINE: PATH: what is wrong, all of them in one run, and exits 8 if
there is any. Warnings (FILE:LINE: warning: …) do not change the exit status. With a managed
config (/etc/keybroker/managed.yaml, or $KEYBROKER_MANAGED_CONFIG where that does not exist),
checks it too and lists what of yours it overrides, e.g.
  config.yaml:4: profiles.org: profile org is managed by /etc/keybroker/managed.yaml; your definition is ignored

Examples:
  keybroker config check
  keybroker config check --config ./keybroker.yaml`,
    )
    .action(async (opts: { config?: string }) => {
      const [
        { AdapterPool },
        { adapterFor },
        { ConfigError, loadConfig, resolveConfigPath },
        { resolveManagedConfigPath },
        { createLogger },
      ] = await Promise.all([
        import('../adapter-pool.js'),
        import('../../adapters/registry.js'),
        import('../config/load.js'),
        import('../config/managed.js'),
        import('../log.js'),
      ]);
      const where = resolveConfigPath({ flag: opts.config });
      const pool = new AdapterPool({ find: adapterFor, env: process.env, log: createLogger({ level: 'silent' }) });
      try {
        const loaded = await loadConfig(where.path, pool.acquire, undefined, { managed: resolveManagedConfigPath() });
        const m = loaded.managed;
        if (m) {
          process.stdout.write(
            m.error
              ? `${m.error}\n`
              : `${m.file}: managed config, ok, ${m.profiles.length} profile${m.profiles.length === 1 ? '' : 's'}${m.locked.length ? `, locked: ${m.locked.join(', ')}` : ''}\n`,
          );
        }
        process.stdout.write(
          `${where.path}: ok, ${loaded.profiles.size} profile${loaded.profiles.size === 1 ? '' : 's'}${m && !m.error ? ` (${m.profiles.length} managed)` : ''}\n`,
        );
        for (const p of loaded.profiles.values()) {
          process.stdout.write(
            `  ${p.name}${p.managedBy ? ' (managed)' : ''}: ${p.scheme}: source, ttl ${formatDuration(p.ttlMs)}, maxStale ${formatDuration(p.maxStaleMs)}, timeout ${formatDuration(p.timeoutMs)}${p.multiline ? ', multiline' : ''}\n`,
          );
        }
        for (const w of loaded.warnings) {
          if (!w.kind) process.stdout.write(`${w.file}${w.line ? `:${w.line}` : ''}: ${w.path}: ${w.message}\n`);
        }
        for (const r of loaded.directories) {
          process.stdout.write(`  directory ${r.dir}${r.path !== r.dir ? ` (${r.path})` : ''} → ${r.profile}\n`);
        }
        if (!loaded.audit) process.stdout.write('  audit trail: off (audit: false)\n');
        // Warnings do not fail the check: the config works, it may just surprise.
        for (const w of loaded.warnings) {
          if (w.kind)
            process.stderr.write(`${w.file}${w.line ? `:${w.line}` : ''}: warning: ${w.path}: ${w.message}\n`);
        }
      } catch (err) {
        if (err instanceof ConfigError) {
          process.stderr.write(`${err.message}\n`);
          die(
            'CONFIG_INVALID',
            `${err.problems.length} problem${err.problems.length === 1 ? '' : 's'} in ${where.path}`,
          );
        }
        throw err;
      } finally {
        await pool.closeAll();
      }
    });
}
