/**
 * One provider as the Broker drives it: lazy loading of its implementation, instance settings
 * parsed once per instance, the typed contexts it is given, error wrapping and capability checks.
 * Nothing outside this module calls a provider implementation directly.
 * @module
 */
import { BrokerError, InventoryError, ProviderError, SettingsError, UserInputError, asError } from '../errors.js';
import type { InventoryStore } from '../inventory/store.js';
import type { Logger } from '../logger.js';
import {
  SPECIFICATION_VERSION,
  type AnyProviderDefinition,
  type HostContext,
  type ProviderContext,
  type ProviderActions,
  type ProviderImplementation,
} from '../provider.js';
import type { HostRecord } from '../records.js';
import { describeArgs, validateArgs, validateInstance } from '../requests.js';
import { packageStatus, requirePackages } from '../packages.js';
import { redact, scrub } from '../secrets.js';
import { resolveInstance, type Settings } from '../settings.js';
import type { ProviderInfo } from './types.js';

/** What every runtime shares: the Broker's environment. */
export interface RuntimeEnvironment {
  settings: Settings;
  directory: string;
  brokerId: string;
  owner: string;
  logger: Logger;
  store: InventoryStore;
}

/** Capabilities a provider may lack, and what to call them in messages. */
const CAPABILITIES = {
  extend: 'has no leases to extend',
  discover: 'cannot list its hosts, so it cannot be synced',
  transport: 'has no session of its own for its hosts',
  describe: 'offers no live help',
} as const;
type Capability = keyof typeof CAPABILITIES;

/** A provider, ready to be called. */
export class ProviderRuntime {
  readonly definition: AnyProviderDefinition;
  readonly #env: RuntimeEnvironment;
  #implementation: Promise<ProviderImplementation> | undefined;
  readonly #instances = new Map<string, { name: string; settings: Record<string, unknown> }>();

  constructor(definition: AnyProviderDefinition, env: RuntimeEnvironment) {
    if ((definition as { specificationVersion?: unknown }).specificationVersion !== SPECIFICATION_VERSION) {
      throw new SettingsError(
        `provider \`${definition.name}\` follows provider contract ${String((definition as { specificationVersion?: unknown }).specificationVersion ?? '(none)')}, and this hostbroker speaks ${SPECIFICATION_VERSION}; define it with \`defineProvider\` from this version (see docs/providers.md).`,
      );
    }
    this.definition = definition;
    this.#env = env;
  }

  get name(): string {
    return this.definition.name;
  }

  /** Whether sync and reap look at this provider without being asked: it has settings, or needs none. */
  get inUse(): boolean {
    return this.definition.needsSettings === false || this.#env.settings.providers[this.name] !== undefined;
  }

  /** The implementation, loaded once (a failed load is tried again next time). */
  implementation(): Promise<ProviderImplementation> {
    if (!this.#implementation) {
      // Before the implementation (and so before any record): a missing SDK says what to install.
      const loading = Promise.resolve()
        .then(() => requirePackages(this.definition.packages ?? [], `The ${this.name} provider`))
        .then(() => this.definition.load() as Promise<ProviderImplementation>);
      loading.catch(() => {
        if (this.#implementation === loading) this.#implementation = undefined;
      });
      this.#implementation = loading;
    }
    return this.#implementation;
  }

  /** The implementation, when it has `capability`; a UserInputError saying it lacks it otherwise. */
  async require<C extends Capability>(capability: C, about?: string): Promise<ProviderImplementation & Required<Pick<ProviderImplementation, C>>> {
    const impl = await this.implementation();
    if (!impl[capability]) throw new UserInputError(`provider \`${this.name}\` ${CAPABILITIES[capability]}${about ? ` (${about})` : ''}.`);
    return impl as ProviderImplementation & Required<Pick<ProviderImplementation, C>>;
  }

  /** Names of the instances in settings (`default` when none are named). */
  instances(): string[] {
    const names = Object.keys(this.#env.settings.providers[this.name]?.instances ?? {});
    return names.length ? names : ['default'];
  }

  /** Settings of an instance, parsed once by the definition's schema. */
  instance(name?: string): { name: string; settings: Record<string, unknown> } {
    const key = name ?? '\0default';
    let found = this.#instances.get(key);
    if (!found) {
      const resolved = resolveInstance(this.#env.settings, this.name, name);
      found = { name: resolved.name, settings: validateInstance(this.definition, resolved.name, resolved.values) };
      this.#instances.set(key, found);
    }
    return found;
  }

  /** Validated checkout arguments. */
  parseArgs(args: Record<string, unknown>, what?: string): Record<string, unknown> {
    return validateArgs(this.definition, args, what);
  }

  /** The context for calls that are about no single host. */
  context(instance?: string, signal?: AbortSignal): ProviderContext {
    const { name, settings } = this.instance(instance);
    const env = this.#env;
    const pool = this.#pool();
    return {
      provider: this.name,
      instance: name,
      instanceSettings: settings,
      settings: env.settings,
      directory: env.directory,
      brokerId: env.brokerId,
      owner: env.owner,
      logger: env.logger,
      signal: signal ?? new AbortController().signal,
      holders: async () => {
        const [claims, records] = await Promise.all([env.store.reservations(pool), env.store.list()]);
        const byId = new Map(records.map((r) => [r.id, r]));
        const out = new Map<string, HostRecord>();
        for (const c of claims) {
          const holder = byId.get(c.recordId);
          if (holder) out.set(c.resource, holder);
        }
        return out;
      },
    };
  }

  /** The context for a call about one host: the provider may note facts on its record, and reserve. */
  hostContext(record: HostRecord, signal?: AbortSignal): HostContext {
    const store = this.#env.store;
    const gone = (): InventoryError =>
      new InventoryError(
        `the record of ${record.name} (${record.id}) was removed while its provider was working on it (another process checked it in); nothing more is noted on it.`,
      );
    return {
      ...this.context(record.instance, signal),
      checkpoint: async (data) => {
        const clean = redact(data, 'drop');
        const next = await store.patch(record.id, (current) => ({ data: { ...current.data, ...clean } }));
        if (!next) throw gone();
        return next;
      },
      reserve: async (candidates) => store.reserve(record.id, this.#pool(), candidates),
    };
  }

  /** One pool of claims per provider: the same machine listed by two instances is still one machine. */
  #pool(): string {
    return this.name;
  }

  /** Calls the implementation; whatever it throws that is not a BrokerError becomes a ProviderError. */
  async call<T>(work: (impl: ProviderImplementation) => Promise<T>): Promise<T> {
    const impl = await this.implementation();
    try {
      return await work(impl);
    } catch (error) {
      throw this.wrap(error);
    }
  }

  /** A provider's failure as a BrokerError (service texts may quote a registered secret). */
  wrap(error: unknown): Error {
    if (BrokerError.isInstance(error)) return error;
    return new ProviderError(this.name, scrub(asError(error).message), { cause: error });
  }

  /** Runs an action with arguments checked against its schema. */
  async action(action: string, args: Record<string, unknown>, instance?: string): Promise<unknown> {
    const def = (this.definition.actions as ProviderActions | undefined)?.[action];
    if (!def) {
      const known = Object.keys(this.definition.actions ?? {});
      throw new UserInputError(
        `provider \`${this.name}\` has no action \`${action}\`; ${known.length ? `actions: ${known.join(', ')}` : 'it has no actions'}.`,
      );
    }
    const parsed = def.schema.safeParse(args);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(top level)'}: ${i.message}`).join('; ');
      throw new UserInputError(`invalid arguments for ${this.name} action \`${action}\`: ${issues}.`);
    }
    const ctx = this.context(instance);
    return this.call(async (impl) => {
      const run = (impl.actions as Record<string, (a: unknown, c: ProviderContext) => Promise<unknown>> | undefined)?.[action];
      if (!run) throw new ProviderError(this.name, `the implementation has no function for its action \`${action}\`; this is a bug in the provider.`);
      return run(parsed.data, ctx);
    });
  }

  /** What `broker.providers()` says of this provider. */
  info(): ProviderInfo {
    const d = this.definition;
    return {
      name: d.name,
      description: d.description,
      arguments: describeArgs(d.args),
      actions: Object.fromEntries(
        Object.entries((d.actions ?? {}) as ProviderActions).map(([k, a]) => [k, { description: a.description, arguments: describeArgs(a.schema) }]),
      ),
      instances: this.instances(),
      packages: packageStatus(d.packages ?? []),
    };
  }

  /** Frees the implementation's clients, when it was loaded. */
  async close(): Promise<void> {
    await this.#implementation?.then((impl) => impl.close?.()).catch(() => undefined);
  }
}
