/**
 * The state the Broker's modules share: settings, the store, the provider runtimes, the hosts this
 * Broker holds and their sessions. Internal: the public face is the `Broker` facade; the CLI and
 * topologies reach it through {@link coreOf}.
 * @module
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Host, type HostClass, type HostOwner } from '../../hosts/host.js';
import type { Session } from '../../hosts/session.js';
import { UserInputError } from '../errors.js';
import { brokerIdOf, defaultOwner } from '../identity.js';
import { openInventoryStore } from '../inventory/open.js';
import type { InventoryStore } from '../inventory/store.js';
import { createLogger, safeLogger, type Logger } from '../logger.js';
import type { AnyProviderDefinition } from '../provider.js';
import type { HostRecord } from '../records.js';
import { builtinProviders } from '../registry.js';
import { loadSettings, type Settings, takeSettingsWarnings } from '../settings.js';
import { ProviderRuntime } from './runtime.js';
import type { BrokerOptions, ProgressEvent } from './types.js';

/** Everything a Broker knows; one per Broker. */
export class BrokerCore {
  readonly directory: string;
  readonly settings: Settings;
  readonly store: InventoryStore;
  readonly logger: Logger;
  readonly brokerId: string;
  readonly owner: string;
  readonly hostClass: HostClass;
  /** Default `check` of the hosts' `execute`. */
  readonly check: boolean;
  /** Hosts this Broker checked out and still holds (disposing the Broker checks them in). */
  readonly held = new Map<string, Host>();
  /** One session per record, shared by every Host object of it. */
  readonly sessions = new Map<string, Session>();
  /** The providers given to the Broker beyond the built-in ones (a derived Broker gets them too). */
  readonly extraProviders: readonly AnyProviderDefinition[];
  /** Ends of the live `watch()` iterators, called when the Broker closes. */
  readonly watchers = new Set<() => void>();
  readonly #runtimes = new Map<string, ProviderRuntime>();
  readonly #definitions = new Map<string, AnyProviderDefinition>();
  readonly #onProgress: ((event: ProgressEvent) => void) | undefined;
  /** What Hosts are given: the narrow way back to this Broker. Set by the facade. */
  hostOwner!: HostOwner;

  constructor(options: BrokerOptions) {
    this.directory = resolve(options.directory ?? process.env.BROKER_DIRECTORY ?? join(homedir(), '.broker'));
    this.extraProviders = options.providers ?? [];
    for (const d of [...builtinProviders, ...this.extraProviders]) this.#definitions.set(d.name, d);
    this.settings = loadSettings(this.directory, { overrides: options.settings ?? {}, providerNames: [...this.#definitions.keys()] });
    this.logger = options.logger ? safeLogger(options.logger, options.loggerStyle) : createLogger(this.settings.logLevel);
    for (const w of takeSettingsWarnings(this.settings)) this.logger.warn(w.message, w.fields);
    this.store = options.store ?? openInventoryStore(this.directory, this.settings);
    this.brokerId = brokerIdOf(this.directory);
    this.owner = this.settings.owner ?? defaultOwner();
    this.hostClass = (options.hostClass as HostClass | undefined) ?? Host;
    this.#onProgress = options.onProgress;
    this.check = options.check ?? false;
  }

  /** The runtime of a provider, or a UserInputError listing the known ones. */
  runtime(name: string): ProviderRuntime {
    let runtime = this.#runtimes.get(name);
    if (!runtime) {
      const definition = this.#definitions.get(name);
      if (!definition) throw new UserInputError(`unknown provider \`${name}\`; known providers: ${[...this.#definitions.keys()].join(', ')}.`);
      runtime = new ProviderRuntime(definition, this);
      this.#runtimes.set(name, runtime);
    }
    return runtime;
  }

  /** Names of every provider this Broker knows. */
  providerNames(): string[] {
    return [...this.#definitions.keys()];
  }

  /** The runtimes that have been created (for closing). */
  loadedRuntimes(): ProviderRuntime[] {
    return [...this.#runtimes.values()];
  }

  progress(event: ProgressEvent): void {
    this.#onProgress?.(event);
  }

  /** A Host object for a record (no provider is asked). */
  makeHost<T extends Host>(record: HostRecord, hostClass?: HostClass<T>): T {
    const Ctor = (hostClass ?? this.hostClass) as HostClass<T>;
    return new Ctor({ record, owner: this.hostOwner, check: this.check });
  }

  /** Closes and forgets a record's session, if this Broker opened one (after checkin, keep or forget). */
  async closeSession(id: string): Promise<void> {
    const session = this.sessions.get(id);
    this.sessions.delete(id);
    await session?.close().catch(() => undefined);
  }
}

const cores = new WeakMap<object, BrokerCore>();

/** @internal Connects a Broker facade to its core. */
export function attachCore(broker: object, core: BrokerCore): void {
  cores.set(broker, core);
}

/** @internal The core behind a Broker, for the CLI and topologies (not part of the public API). */
export function coreOf(broker: object): BrokerCore {
  const core = cores.get(broker);
  if (!core) throw new UserInputError('not a hostbroker Broker: pass the object `new Broker()` returned.');
  return core;
}
