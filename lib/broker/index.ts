/**
 * The Broker: the public face of hostbroker. Each method is a short delegation to the module
 * that does that job (checkout, release, leases, reconcile, sessions, targets), around one
 * {@link ProviderRuntime} per provider. Data flows one way: Broker → provider → Host → Session.
 * @module
 */
import type { Host, HostClass } from '../../hosts/host.js';
import { HostGroup } from '../../hosts/host-group.js';
import { asError, AbortedError, UserInputError } from '../errors.js';
import { applyFilter, type Filter } from '../filter.js';
import { knownHostsPath } from '../known-hosts.js';
import type { InventoryChange } from '../inventory/store.js';
import type { Logger } from '../logger.js';
import type { DeploymentRecord, HostRecord } from '../records.js';
import type { Duration, Settings, SettingsInput } from '../settings.js';
import type { TopologyBroker } from '../topology/seam.js';
import type { ScenarioBroker, ScenarioOptions, ScenarioResult } from '../scenarios/index.js';
import type { Deployment, TopologyMetadata, UpOptions } from '../topology/index.js';
import { attachCore, BrokerCore } from './core.js';
import { extend } from './leases.js';
import { sessionFor } from './sessions.js';
import { findIn, resolveTarget } from './targets.js';
import { type WatchOptions, watch } from './watch.js';
import type { BrokerOptions, CheckinOptions, CheckoutRequest, ExecuteRequest, HostTarget, ProviderInfo, SyncResult } from './types.js';

export type * from './types.js';
export type { WatchOptions } from './watch.js';

// What a checkout, checkin or reap runs loads on its first call, so importing hostbroker stays cheap.
const checkoutOps = () => import('./checkout.js');
const releaseOps = () => import('./release.js');
const reuseOps = () => import('./reuse.js');
const reconcileOps = () => import('./reconcile.js');

/** Checks hosts out of providers and keeps track of them. */
export class Broker<H extends Host = Host> implements AsyncDisposable {
  readonly directory: string;
  readonly settings: Settings;
  readonly logger: Logger;
  readonly brokerId: string;
  readonly owner: string;
  readonly #core: BrokerCore;

  constructor(options: BrokerOptions<H> = {}) {
    const core = new BrokerCore(options as BrokerOptions);
    this.#core = core;
    this.directory = core.directory;
    this.settings = core.settings;
    this.logger = core.logger;
    this.brokerId = core.brokerId;
    this.owner = core.owner;
    core.hostOwner = {
      sessionFor: (record) => sessionFor(core, record),
      release: async (record) => (await reuseOps()).releaseOrPool(core, record),
      extend: (host, opts) => extend(core, host, opts),
      recordOf: (id) => core.store.get(id),
    };
    attachCore(this, core);
  }

  /**
   * `<directory>/known_hosts`: the pinned key of every SSH host in the inventory, kept in step
   * with it, for `ssh -o UserKnownHostsFile=... -o StrictHostKeyChecking=yes`, scp, rsync, Ansible.
   */
  get knownHostsFile(): string {
    return knownHostsPath(this.directory);
  }

  /** Checks out hosts. Without `count`: one Host; with `count`: a HostGroup. */
  checkout<T extends Host = H>(request: CheckoutRequest<T> & { count: number }): Promise<HostGroup<T>>;
  checkout<T extends Host = H>(request: CheckoutRequest<T> & { count?: undefined }): Promise<T>;
  checkout<T extends Host = H>(request: CheckoutRequest<T>): Promise<T | HostGroup<T>>;
  async checkout<T extends Host = H>(request: CheckoutRequest<T>): Promise<T | HostGroup<T>> {
    const core = this.#core;
    const { checkout } = await checkoutOps();
    const reuse = request !== null && typeof request === 'object' && request.reuse === true;
    return reuse ? (await reuseOps()).reuseCheckout<T>(core, request, (r) => checkout<T>(core, r)) : checkout<T>(core, request);
  }

  /**
   * Checks hosts in: teardown (for live Host objects), release, forget. Concurrent; one failure
   * never stops the others; a record is removed only when its release succeeded. A live Host
   * checked out with `reuse` goes back to the warm-reuse pool instead; pooled hosts idle longer
   * than `checkout.reuseIdle` are released afterwards.
   */
  async checkin(target: HostTarget, options: CheckinOptions = {}): Promise<void> {
    try {
      await (await releaseOps()).checkin(this.#core, target, options);
    } finally {
      await this.#expireIdle();
    }
  }

  /**
   * Releases every host of this owner waiting in the warm-reuse pool (`hostbroker checkin --pool`);
   * resolves with their records. Hosts a checkout took meanwhile are left to it.
   */
  async emptyPool(): Promise<HostRecord[]> {
    return (await reuseOps()).emptyPool(this.#core);
  }

  /** Pooled hosts idle longer than `checkout.reuseIdle` are released; a failure is only logged. */
  async #expireIdle(look = false): Promise<HostRecord[]> {
    return (await reuseOps()).expireIdleLogged(this.#core, look);
  }

  /**
   * Keeps hosts for a person to look at: records `kept: { reason, at }` on their records, closes
   * their sessions and stops holding them, so disposing this Broker does not check them in.
   */
  async keep(target: HostTarget, reason: string): Promise<HostRecord[]> {
    return (await releaseOps()).keep(this.#core, target, reason);
  }

  /** Clears the kept mark that {@link keep} set (the hosts stay checked out). */
  async unkeep(target: HostTarget): Promise<HostRecord[]> {
    return (await releaseOps()).unkeep(this.#core, target);
  }

  /**
   * Drops records without asking their provider (a host known to be gone, or one no provider can
   * release). What the provider made stays findable by `reap` through its tags.
   */
  async forget(target: HostTarget): Promise<HostRecord[]> {
    return (await releaseOps()).forget(this.#core, target);
  }

  /** Extends the lease of hosts whose provider supports it. */
  extend(target: HostTarget, options: { lease?: Duration } = {}): Promise<void> {
    return extend(this.#core, target, options);
  }

  /**
   * Checks out new hosts with the same recipe as existing ones. With `signal`, an abort stops it
   * as it stops {@link checkout}, and the copies made before are released too.
   */
  async duplicate(target: HostTarget, options: { count?: number; signal?: AbortSignal } = {}): Promise<HostGroup<H>> {
    const items = await resolveTarget(this.#core, target);
    const out: H[] = [];
    for (const { record } of items) {
      const { name: _name, ...args } = record.recipe.args;
      const request = {
        ...args,
        provider: record.recipe.provider,
        instance: record.recipe.instance,
        count: options.count ?? 1,
        ...(options.signal ? { signal: options.signal } : {}),
      };
      try {
        out.push(...(await this.checkout<H>(request as unknown as CheckoutRequest<H> & { count: number })));
      } catch (error) {
        if (!options.signal?.aborted || !out.length) throw error;
        const released = await this.checkin(out).then(
          () => `the ${out.length} copies made before were released`,
          (e: unknown) => `releasing the ${out.length} copies made before failed (${asError(e).message}); their records are kept for \`hostbroker checkin\``,
        );
        const inner = error instanceof AbortedError ? error : undefined;
        throw new AbortedError(`${asError(error).message} Also, ${released}.`, {
          released: [...(inner?.released ?? []), ...out.map((h) => h.name)],
          kept: inner?.kept ?? [],
          neverStarted: inner?.neverStarted ?? 0,
          reason: options.signal.reason,
        });
      }
    }
    return HostGroup.fromHosts(out);
  }

  /** The inventory, optionally synced from providers first and filtered. */
  async inventory(options: { filter?: Filter<HostRecord>; sync?: boolean | string } = {}): Promise<HostRecord[]> {
    if (options.sync) await this.sync(options.sync === true ? undefined : options.sync);
    return applyFilter(await this.#core.store.list(), options.filter);
  }

  /**
   * Changes to the inventory made by anyone (this process, another, another machine on a shared
   * store), as they happen: `for await (const change of broker.watch()) ...`. Ends on `break`,
   * on `signal`, or when this Broker closes.
   */
  watch(options: WatchOptions = {}): AsyncIterableIterator<InventoryChange> {
    return watch(this.#core, options);
  }

  /** The deployments `up` made (in any process). */
  async deployments(): Promise<DeploymentRecord[]> {
    return (await this.#core.store.snapshot()).deployments;
  }

  /**
   * Rebuilds the inventory from what providers report (by their tags): hosts created by another
   * process appear, hosts that are gone are removed. `provider` may be `name` or `name::instance`.
   */
  async sync(provider?: string): Promise<SyncResult> {
    return (await reconcileOps()).sync(this.#core, provider);
  }

  /**
   * Removes what killed processes left behind: records stuck in `provisioning` whose process is
   * gone (released through their provider), and provider resources tagged by this broker whose
   * record is gone or whose lease has passed. Pooled hosts idle longer than `checkout.reuseIdle`
   * are released first.
   */
  async reap(provider?: string): Promise<{ released: HostRecord[]; removed: string[] }> {
    const expired = await this.#expireIdle(true);
    const result = await (await reconcileOps()).reap(this.#core, provider);
    return { ...result, released: [...expired, ...result.released] };
  }

  /** Runs a provider action that creates no host. */
  execute(request: ExecuteRequest): Promise<unknown> {
    const { provider, action, instance, ...rest } = request;
    return this.#core.runtime(provider).action(action, rest, instance);
  }

  /** The providers, their arguments and actions (from their zod schemas). */
  providers(): ProviderInfo[] {
    return this.#core.providerNames().map((n) => this.#core.runtime(n).info());
  }

  /** Live help from a provider's service (workflows, images, machines...). */
  async describeProvider(provider: string, topic?: string, instance?: string): Promise<Record<string, unknown>> {
    const runtime = this.#core.runtime(provider);
    const impl = await runtime.implementation();
    if (!impl.describe) return {};
    return runtime.call(() => impl.describe!(runtime.context(instance), topic));
  }

  /** A live Host from an inventory record (works in any process). */
  reconstruct<T extends Host = H>(record: HostRecord | string, hostClass?: HostClass<T>): T {
    if (typeof record === 'string') throw new UserInputError('reconstruct takes a record; use `await broker.find(id)` to look one up first.');
    return this.#core.makeHost(record, hostClass ?? (this.#core.hostClass as HostClass<T>));
  }

  /**
   * Provisions a multi-host topology (mrack-style metadata: YAML text, a file path, or an object)
   * on one or many providers at once. See docs/topologies.md.
   */
  async up(metadata: string | TopologyMetadata, options: UpOptions<H> = {}): Promise<Deployment<H>> {
    return (await import('../topology/up.js')).up(this.#topology(), metadata, options);
  }

  /**
   * Runs a scenario: a YAML workflow of checkouts, commands, transfers and checkins (a file path,
   * or a name in `<directory>/scenarios/`). See docs/scenarios.md. Resolves when it completed or
   * an `exit` step ended it; rejects with a ScenarioError when the file is invalid (every problem
   * listed) or a step failed. The scenario's own hosts are checked in at the end either way.
   */
  async scenario(fileOrName: string, options: ScenarioOptions = {}): Promise<ScenarioResult> {
    return (await import('../scenarios/index.js')).runScenario(this.#scenarioBroker(), fileOrName, options);
  }

  /** What scenarios may use of this Broker, and Brokers for a scenario's own settings. */
  #scenarioBroker(): ScenarioBroker {
    const seam: ScenarioBroker = {
      directory: this.directory,
      checkout: (request) => this.checkout(request as CheckoutRequest<H>),
      checkin: (target, options) => this.checkin(target as HostTarget, options),
      inventory: (options) => this.inventory(options),
      deployments: () => this.deployments(),
      execute: (request) => this.execute(request),
      up: (metadata, options) => this.up(metadata, options as UpOptions<H>),
      deployment: (key) => this.deployment(key),
      providers: () => this.providers(),
      describeProvider: (provider, topic, instance) => this.describeProvider(provider, topic, instance),
      reconstruct: (record) => this.reconstruct(record),
      derive: ({ directory, settings }) => {
        const derived = new Broker({
          directory: directory ?? this.directory,
          settings: settings as SettingsInput,
          logger: this.logger,
          providers: this.#core.extraProviders,
        });
        return Object.assign(derived.#scenarioBroker(), { close: () => derived.close() });
      },
    };
    return seam;
  }

  /** A deployment made by `up` (in this or another process), by id or name; the only one when omitted. */
  async deployment(key?: string): Promise<Deployment<H>> {
    return (await import('../topology/deployment.js')).openDeployment(this.#topology(), key);
  }

  /** Finds one record by id, name or hostname. */
  async find(key: string): Promise<HostRecord | undefined> {
    return findIn(await this.#core.store.list(), key);
  }

  /** Checks in what this Broker checked out and still holds, then closes. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      const hosts = [...this.#core.held.values()];
      if (hosts.length) await this.checkin(hosts);
    } finally {
      await this.close();
    }
  }

  /** Closes sessions, provider clients and the store (hosts stay checked out). */
  async close(): Promise<void> {
    const core = this.#core;
    for (const finish of [...core.watchers]) finish();
    await Promise.allSettled([...core.sessions.values()].map((s) => s.close()));
    core.sessions.clear();
    await Promise.allSettled(core.loadedRuntimes().map((r) => r.close()));
    await core.store.close().catch(() => undefined);
  }

  /** What topologies may use of this Broker. */
  #topology(): TopologyBroker<H> {
    const core = this.#core;
    return {
      settings: core.settings,
      directory: core.directory,
      owner: core.owner,
      logger: core.logger,
      store: core.store,
      providerNames: () => core.providerNames(),
      definition: (name) => core.runtime(name).definition,
      checkout: (request) => this.checkout<H>(request as CheckoutRequest<H> & { count?: undefined }),
      checkin: (target) => this.checkin(target),
      reconstruct: (record) => this.reconstruct<H>(record),
    };
  }
}
