// One adapter instance per source kind and settings block, created on first use and shared by
// every profile that uses it; adapters no config uses any more are closed after a reload.
// Beside the adapter interface, not in the cache: the daemon's cache, `config check` and `doctor`
// all hand it the registry (adapters/registry.ts), so none of them depends on another's internals.
import type { Adapter, AdapterModule, FindAdapter, Logger } from './adapter.js';
import { BrokerError, describeUnknownError } from './errors.js';
import type { SourceStatus } from './protocol/messages.js';

export class AdapterPool {
  readonly #adapters = new Map<string, Promise<Adapter>>();
  readonly #env: NodeJS.ProcessEnv;
  readonly #log: Logger;
  readonly #modules: Partial<Record<string, AdapterModule>>;
  readonly #find: FindAdapter;

  /**
   * `modules` replaces the module loaded for a scheme: how tests hand an adapter a fake client
   * for a backend that cannot run here (1Password), while the daemon, socket and shim stay real.
   */
  constructor(options: {
    find: FindAdapter;
    env: NodeJS.ProcessEnv;
    log: Logger;
    modules?: Partial<Record<string, AdapterModule>>;
  }) {
    this.#find = options.find;
    this.#env = options.env;
    this.#log = options.log;
    this.#modules = options.modules ?? {};
  }

  static keyOf(scheme: string, settings: Record<string, unknown> | undefined): string {
    return `${scheme}\0${JSON.stringify(settings ?? null)}`;
  }

  /** The adapter for a scheme and settings block, loading its module with import() on first use. */
  acquire = (scheme: string, settings: Record<string, unknown> | undefined): Promise<Adapter> => {
    const key = AdapterPool.keyOf(scheme, settings);
    let adapter = this.#adapters.get(key);
    if (!adapter) {
      adapter = this.#create(scheme, settings);
      this.#adapters.set(key, adapter);
      adapter.catch(() => this.#adapters.delete(key));
    }
    return adapter;
  };

  async #create(scheme: string, settings: Record<string, unknown> | undefined): Promise<Adapter> {
    const entry = this.#find(scheme);
    if (!entry) throw new BrokerError('CONFIG_INVALID', `unknown source kind "${scheme}:"`);
    let mod = this.#modules[scheme];
    try {
      mod ??= await entry.load();
    } catch (err) {
      this.#log.error({ scheme, ...describeUnknownError(err) }, 'could not load adapter module');
      throw new BrokerError(
        'CONFIG_INVALID',
        `the ${scheme}: adapter could not be loaded (is the install complete? try: npm ci)`,
      );
    }
    const adapter = mod.createAdapter({ settings, env: this.#env, log: this.#log.child({ adapter: scheme }) });
    this.#log.debug({ scheme }, 'adapter created');
    return adapter;
  }

  /** Close every adapter whose key is not in `keep`. */
  async retain(keep: ReadonlySet<string>): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [key, adapter] of this.#adapters) {
      if (keep.has(key)) continue;
      this.#adapters.delete(key);
      closing.push(adapter.then((a) => a.close()).catch(() => {}));
    }
    await Promise.all(closing);
  }

  async closeAll(): Promise<void> {
    await this.retain(new Set());
  }

  async statuses(): Promise<SourceStatus[]> {
    const out: SourceStatus[] = [];
    for (const pending of this.#adapters.values()) {
      const adapter = await pending.catch(() => undefined);
      if (!adapter?.status) continue;
      try {
        const notes = adapter.status();
        if (notes.length > 0) out.push({ kind: adapter.kind, notes });
      } catch {
        // a status line is not worth failing `keybroker status`
      }
    }
    return out;
  }
}
