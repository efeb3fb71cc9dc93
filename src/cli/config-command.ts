import type { Command } from 'commander';
import { formatDuration } from '../config/duration.js';
import { die } from './output.js';

export function registerConfig(program: Command): void {
  const config = program.command('config').description('work with the config file');
  config
    .command('check')
    .description('validate the config file offline: YAML, keys, durations and every source URI')
    .option('--config <file>', 'config file (default: $KEYBROKER_CONFIG, then $XDG_CONFIG_HOME/keybroker/config.yaml)')
    .addHelpText('after', '\nPrints each problem as FILE:LINE: PATH: what is wrong, and exits 8 if there is any.')
    .action(async (opts: { config?: string }) => {
      const [{ AdapterPool }, { ConfigError, loadConfig, resolveConfigPath }, { createLogger }] = await Promise.all([
        import('../cache/adapter-pool.js'),
        import('../config/load.js'),
        import('../log.js'),
      ]);
      const where = resolveConfigPath({ flag: opts.config });
      const pool = new AdapterPool({ env: process.env, log: createLogger({ level: 'silent' }) });
      try {
        const loaded = await loadConfig(where.path, pool.acquire);
        process.stdout.write(`${where.path}: ok, ${loaded.profiles.size} profile${loaded.profiles.size === 1 ? '' : 's'}\n`);
        for (const p of loaded.profiles.values()) {
          process.stdout.write(`  ${p.name}: ${p.scheme}: source, ttl ${formatDuration(p.ttlMs)}, maxStale ${formatDuration(p.maxStaleMs)}, timeout ${formatDuration(p.timeoutMs)}\n`);
        }
      } catch (err) {
        if (err instanceof ConfigError) {
          process.stderr.write(`${err.message}\n`);
          die('CONFIG_INVALID', `${err.problems.length} problem${err.problems.length === 1 ? '' : 's'} in ${where.path}`);
        }
        throw err;
      } finally {
        await pool.closeAll();
      }
    });
}
