/**
 * The Broker: resolves requests, records intent in the inventory, asks providers for hosts,
 * builds Host objects, and checks them in again. Data flows one way:
 * Broker → provider → Host → Session.
 * @module
 */
import { setMaxListeners } from 'node:events';
import { homedir, hostname as machineHostname } from 'node:os';
import { join, resolve } from 'node:path';
import { Host, type HostClass, type HostOwner } from '../hosts/host.js';
import { HostGroup } from '../hosts/host-group.js';
import { Session, type Transport } from '../hosts/session.js';
import { SshTransport } from '../hosts/ssh-transport.js';
import { abortReason, abortedBeforeStart, mapSettled, signalOption, withAbort, withDeadline } from './concurrency.js';
import {
  BrokerError,
  HostConnectionError,
  PartialFailureError,
  ProviderError,
  TimeoutError,
  UserInputError,
  asError,
  type FailureEntry,
} from './errors.js';
import { applyFilter, type Filter } from './filter.js';
import { brokerIdOf, defaultOwner, isProcessAlive, newRecordId, shortId } from './identity.js';
import { Inventory } from './inventory.js';
import { createLogger, safeLogger, type Logger } from './logger.js';
import type { AnyProviderDefinition, DiscoveredHost, HostContext, ProviderActionDefinition, ProviderContext, ProviderImplementation, ProvisionedHost } from './provider.js';
import * as v2 from './broker/adapter-v2.js';
import type { HostRecord } from './records.js';
import { builtinProviders, type ProviderArgs } from './registry.js';
import { describeArgs, mergeRequest, validateArgs, validateInstance, type ArgumentDoc } from './requests.js';
import { redact, scrub } from './secrets.js';
import { loadSettings, resolveInstance, toMs, type Duration, type Settings, type SettingsInput } from './settings.js';
import type { Deployment, TopologyMetadata, UpOptions } from './topology/index.js';

/** Most hosts one checkout may ask for. */
const MAX_COUNT = 1000;

/** Options for `new Broker()`. */
export interface BrokerOptions<H extends Host = Host> {
  /** Where settings and the inventory live. Default `$BROKER_DIRECTORY`, else `~/.broker`. */
  directory?: string;
  /** Settings given in code; merged over `broker_settings.yaml`. */
  settings?: SettingsInput;
  /** Class of the hosts checkout returns. */
  hostClass?: HostClass<H>;
  /** Where log lines go (secrets are scrubbed first). */
  logger?: Logger;
  /** Providers beyond the built-in ones (or replacing one by name). */
  providers?: readonly AnyProviderDefinition[];
  /** Called as multi-host work progresses (the CLI draws a progress line from it). */
  onProgress?: (event: ProgressEvent) => void;
}

/** Progress of a multi-host operation. */
export interface ProgressEvent {
  operation: 'checkout' | 'checkin' | 'extend' | 'sync';
  /** How many are done (succeeded or failed). */
  done: number;
  total: number;
  /** The host this event is about. */
  host?: string;
  /** What happened to it. */
  outcome?: 'ok' | 'failed';
}

/** Options every checkout takes, whatever the provider. */
export interface CheckoutOptions<H extends Host = Host> {
  /** How many hosts; with a count, checkout returns a HostGroup. */
  count?: number;
  /** Settings instance of the provider to use. */
  instance?: string;
  hostClass?: HostClass<H>;
  /** JSON or YAML file whose top-level keys become arguments. */
  argsFile?: string;
  /** Lease length (providers with leases), e.g. `4h`. */
  lease?: Duration;
  /** Limit for each host's checkout, e.g. `10m`. */
  timeout?: Duration;
  /** Hosts provisioned at once. */
  concurrency?: number;
  /** `abort` (default): one failure releases every host and throws. `keep`: return what succeeded. */
  onPartialFailure?: 'abort' | 'keep';
  /** Bundles (settings `bundles:`) applied after provisioning, before `setup()`. */
  bundles?: string[];
  /** Values for templated bundle scripts. */
  bundleVars?: Record<string, string>;
  /** Wait until SSH logins work before handing hosts out (default true). */
  waitForSsh?: boolean;
  /**
   * Gives the checkout up when aborted: no further host is started, running provider checkouts
   * are told (through their `ctx.signal`), everything made so far is released, and the call
   * rejects with a {@link TimeoutError} (`timeoutMs` 0) that says what was released and what was
   * kept. A record is removed only when its release succeeded; one whose release failed stays
   * for `checkin` or `reap`. An already aborted signal rejects before any provider is asked.
   * It wins over `onPartialFailure: 'keep'`. A running `setup()` is not interrupted.
   */
  signal?: AbortSignal;
  /** @internal deployment id (topologies). */
  deployment?: string;
}

/** `{ provider, ...args }` for each known provider. */
export type ProviderRequest = { [P in keyof ProviderArgs]: { provider: P; nick?: string } & ProviderArgs[P] }[keyof ProviderArgs];
/** `{ nick }`, optionally with arguments that override the nick's. */
export type NickRequest = { nick: string; provider?: undefined } & Record<string, unknown>;
/** What `broker.checkout` takes. */
export type CheckoutRequest<H extends Host = Host> = (ProviderRequest | NickRequest) & CheckoutOptions<H>;

/** What `checkin`, `extend` and `duplicate` act on. */
export type HostTarget = Host | Iterable<Host | HostRecord | string> | HostRecord | string | { all: true; filter?: Filter<HostRecord> } | { filter: Filter<HostRecord> };

/** Options for {@link Broker.checkin}. */
export interface CheckinOptions {
  /** Hosts released at once. */
  concurrency?: number;
  /** Release only when this JUnit XML file reports no failures or errors; else keep the hosts. */
  ifTestsPassed?: string;
}

/** Result of {@link Broker.sync}. */
export interface SyncResult {
  added: HostRecord[];
  updated: HostRecord[];
  removed: HostRecord[];
}

/** What `broker.providers()` tells about one provider. */
export interface ProviderInfo {
  name: string;
  description: string;
  arguments: ArgumentDoc[];
  actions: Record<string, { description: string; arguments: ArgumentDoc[] }>;
  instances: string[];
}

/** A request for a provider action that creates no host. */
export type ExecuteRequest = { provider: string; action: string; instance?: string } & Record<string, unknown>;

/** Checks hosts out of providers and keeps track of them. */
export class Broker<H extends Host = Host> implements AsyncDisposable {
  readonly directory: string;
  readonly settings: Settings;
  readonly inventoryFile: Inventory;
  readonly logger: Logger;
  readonly brokerId: string;
  readonly owner: string;
  private readonly hostClass: HostClass<H>;
  private readonly definitions = new Map<string, AnyProviderDefinition>();
  private readonly implementations = new Map<string, Promise<ProviderImplementation>>();
  private readonly held = new Map<string, Host>();
  private readonly sessions = new Map<string, Session>();
  private readonly onProgress: ((event: ProgressEvent) => void) | undefined;
  private readonly hostOwner: HostOwner;

  constructor(options: BrokerOptions<H> = {}) {
    this.directory = resolve(options.directory ?? process.env.BROKER_DIRECTORY ?? join(homedir(), '.broker'));
    for (const d of [...builtinProviders, ...(options.providers ?? [])]) this.definitions.set(d.name, d);
    this.settings = loadSettings(this.directory, { overrides: options.settings ?? {}, providerNames: [...this.definitions.keys()] });
    this.logger = options.logger ? safeLogger(options.logger) : createLogger(this.settings.logLevel);
    this.inventoryFile = new Inventory(this.directory);
    this.brokerId = brokerIdOf(this.directory);
    this.owner = this.settings.owner ?? defaultOwner();
    this.hostClass = options.hostClass ?? (Host as unknown as HostClass<H>);
    this.onProgress = options.onProgress;
    this.hostOwner = {
      sessionFor: (record) => this.sessionFor(record),
      checkin: (host) => this.releaseHosts([host]),
      extend: (host, opts) => this.extend(host, opts),
      recordOf: (id) => this.inventoryFile.get(id),
    };
  }

  // ---------------------------------------------------------------- checkout

  /** Checks out hosts. Without `count`: one Host; with `count`: a HostGroup. */
  checkout<T extends Host = H>(request: CheckoutRequest<T> & { count: number }): Promise<HostGroup<T>>;
  checkout<T extends Host = H>(request: CheckoutRequest<T> & { count?: undefined }): Promise<T>;
  checkout<T extends Host = H>(request: CheckoutRequest<T>): Promise<T | HostGroup<T>>;
  async checkout<T extends Host = H>(request: CheckoutRequest<T>): Promise<T | HostGroup<T>> {
    if (request === null || typeof request !== 'object') throw new UserInputError('checkout needs a request object, e.g. { provider: "local" } or { nick: "rhel9" }.');
    const req = request as Record<string, unknown> & CheckoutOptions<T>;
    const signal = signalOption(req.signal);
    const { provider, args: rawArgs, nick } = mergeRequest(req, this.settings);
    if (signal?.aborted) throw abortedBeforeStart(`checkout of ${req.count ?? 1} host(s) from ${provider}`, signal);
    const definition = this.definition(provider);
    const args = validateArgs(definition, rawArgs);
    const count = req.count;
    if (count !== undefined && (!Number.isInteger(count) || count < 1)) throw new UserInputError(`count must be a whole number of at least 1, not ${JSON.stringify(count)}.`);
    // A huge count would build that many intent records (or throw a RangeError) before any check.
    if (count !== undefined && count > MAX_COUNT) throw new UserInputError(`count ${count} is more than ${MAX_COUNT} hosts in one checkout; check out in several smaller groups.`);
    const ctx = this.context(definition, req.instance);
    const impl = await this.implementation(provider);
    const policy = req.onPartialFailure ?? this.settings.checkout.onPartialFailure;
    const n = count ?? 1;
    const leaseMs = req.lease !== undefined ? toMs(req.lease) : this.settings.checkout.lease !== undefined ? toMs(this.settings.checkout.lease) : undefined;
    const timeoutMs = toMs(req.timeout ?? this.settings.checkout.timeout);
    const bundles = [...this.settings.checkout.bundles, ...(req.bundles ?? [])];
    if (bundles.length) {
      // A misspelt or invalid bundle fails before anything is provisioned.
      const { parseBundle } = await import('./bundles.js');
      for (const name of bundles) parseBundle(this.settings, name);
    }

    if (signal?.aborted) throw abortedBeforeStart(`checkout of ${n} host(s) from ${provider}`, signal);
    const records = Array.from({ length: n }, (_, i) => this.intentRecord(provider, ctx.instance, args, nick, i, n, leaseMs, req.deployment));
    await this.inventoryFile.update((data) => {
      data.hosts.push(...records);
    });
    this.logger.info(`checking out ${n} host(s) from ${provider}`, { instance: ctx.instance, ids: records.map((r) => r.id) });

    let done = 0;
    /** Indexes whose provider checkout never started because the signal came first. */
    const notStarted = new Set<number>();
    const aborted = abortErrors(`checkout of ${records.length} host(s) from ${provider}`, signal);
    // One listener on the caller's signal; each running host listens on this one, whose listener
    // count grows with the concurrency (Node warns past 10 on a signal it does not know to allow).
    const inner = signal ? new AbortController() : undefined;
    if (inner) setMaxListeners(0, inner.signal);
    const forward = (): void => inner?.abort(signal?.reason);
    signal?.addEventListener('abort', forward, { once: true });
    let settled: PromiseSettledResult<T>[];
    try {
      settled = await mapSettled(records, req.concurrency ?? this.settings.checkout.concurrency, async (record, index) => {
        if (inner?.signal.aborted) {
          notStarted.add(index);
          throw aborted.make();
        }
        try {
          const host = await this.provisionOne<T>(impl, definition, ctx, args, record, index, n, timeoutMs, req, bundles, inner?.signal, aborted.make);
          this.onProgress?.({ operation: 'checkout', done: ++done, total: n, host: host.name, outcome: 'ok' });
          return host;
        } catch (error) {
          this.onProgress?.({ operation: 'checkout', done: ++done, total: n, host: record.name, outcome: 'failed' });
          throw error;
        }
      });
    } finally {
      signal?.removeEventListener('abort', forward);
    }

    const hosts = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failures: FailureEntry[] = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ target: records[i]!.name, error: asError(s.reason) }] : []));
    if (signal?.aborted) {
      throw await this.abandonCheckout(
        records,
        hosts,
        notStarted,
        failures.filter((f) => !aborted.isOwn(f.error)),
        aborted.make(),
      );
    }
    if (failures.length && (policy === 'abort' || hosts.length === 0)) {
      const released = await this.releaseHosts(hosts).then(
        () => undefined,
        (error: unknown) => asError(error),
      );
      if (released) failures.push({ target: 'releasing the hosts that did succeed', error: released });
      if (count === undefined && failures.length === 1) throw failures[0]!.error;
      throw new PartialFailureError(`checkout of ${n} host(s) from ${provider} failed for ${settled.length - hosts.length}; ${hosts.length ? `the ${hosts.length} that succeeded were released` : 'none succeeded'}:`, failures);
    }
    if (failures.length) this.logger.warn(`${failures.length} of ${n} hosts failed; keeping the ${hosts.length} that succeeded`, { failures: failures.map((f) => `${f.target}: ${f.error.message}`) });
    if (count === undefined) return hosts[0]!;
    return HostGroup.fromHosts(hosts, failures);
  }

  /**
   * After an aborted checkout: forgets the records no provider was asked about, releases the
   * hosts that were made, and returns the error that says what was released and what was kept.
   */
  private async abandonCheckout(records: HostRecord[], hosts: readonly Host[], notStarted: ReadonlySet<number>, failures: FailureEntry[], error: TimeoutError): Promise<TimeoutError> {
    const skipped = new Set(records.filter((_, i) => notStarted.has(i)).map((r) => r.id));
    if (skipped.size) {
      // No provider was asked for these, so there is nothing to release.
      await this.inventoryFile
        .update((data) => {
          data.hosts = data.hosts.filter((h) => !skipped.has(h.id));
        })
        .catch((e: unknown) => this.logger.warn('could not remove the records of hosts that were never started', { error: asError(e).message }));
    }
    await this.releaseHosts(hosts).catch(() => undefined); // what failed keeps its record, read below
    const names = new Map(records.map((r) => [r.id, r.name]));
    for (const h of hosts) names.set(h.id, h.name);
    const left = new Map((await this.inventoryFile.hosts().catch(() => [] as HostRecord[])).map((h) => [h.id, h]));
    const kept = records.filter((r) => left.has(r.id));
    const released = records.filter((r) => !left.has(r.id) && !skipped.has(r.id));
    const parts = [`released ${released.length}${released.length ? ` (${released.map((r) => names.get(r.id)).join(', ')})` : ''}`];
    const never = records.length - released.length - kept.length;
    if (never) parts.push(`${never} never started`);
    if (kept.length) {
      const list = kept.map((r) => `${names.get(r.id)}${left.get(r.id)?.lastError ? `: ${left.get(r.id)!.lastError}` : ''}`).join('; ');
      parts.push(`kept ${kept.length} in the inventory because releasing failed (${list}); check them in later with \`hostbroker checkin ${kept.map((r) => r.id).join(' ')}\` or \`hostbroker reap\``);
    }
    if (failures.length) parts.push(`failed before the abort: ${failures.map((f) => `${f.target}: ${f.error.message}`).join('; ')}`);
    this.logger.info(`${error.message}; ${parts.join('; ')}`);
    return new TimeoutError(`${error.message}: ${parts.join('; ')}.`, 0, { cause: error.cause });
  }

  private intentRecord(provider: string, instance: string, args: Record<string, unknown>, nick: string | undefined, index: number, count: number, leaseMs: number | undefined, deployment: string | undefined): HostRecord {
    const id = newRecordId();
    const given = typeof args.name === 'string' ? args.name : undefined;
    const name = given ? (count > 1 ? `${given}-${index}` : given) : `${provider}-${shortId()}`;
    const record: HostRecord = {
      id,
      name,
      hostname: '',
      provider,
      instance,
      state: 'provisioning',
      recipe: { provider, instance, args: redact(args, 'drop'), ...(nick ? { nick } : {}) },
      owner: this.owner,
      brokerId: this.brokerId,
      createdAt: new Date().toISOString(),
      data: {},
      pid: process.pid,
      machine: machineHostname(),
    };
    if (leaseMs !== undefined) record.leaseExpires = new Date(Date.now() + leaseMs).toISOString();
    if (deployment) record.deployment = deployment;
    return record;
  }

  private async provisionOne<T extends Host>(
    impl: ProviderImplementation,
    definition: AnyProviderDefinition,
    baseCtx: ProviderContext,
    args: Record<string, unknown>,
    record: HostRecord,
    index: number,
    count: number,
    timeoutMs: number,
    req: CheckoutOptions<T>,
    bundles: string[],
    signal: AbortSignal | undefined,
    aborted: () => TimeoutError,
  ): Promise<T> {
    const controller = new AbortController();
    // The caller's abort reaches the provider through the context's signal.
    const forward = (): void => controller.abort(signal?.reason);
    signal?.addEventListener('abort', forward, { once: true });
    const ctx = this.hostContext(baseCtx, record.id, controller.signal); // contract v2 adapter
    let provisioned: ProvisionedHost;
    try {
      const work = impl.checkout(args, { record, index, count }, ctx);
      try {
        provisioned = await withDeadline(withAbort(work, signal, aborted), timeoutMs, `checkout of ${record.name} from ${definition.name}`, controller);
      } catch (error) {
        // Let a provider that ignores the abort finish before releasing, so nothing is left behind.
        await withDeadline(work, 30_000, 'abandoned checkout').catch(() => undefined);
        // Released with the base context: this checkout's signal may be aborted, and a release
        // that honours it would give up at once.
        await this.releaseFailed(impl, baseCtx, record, error);
        throw signal?.aborted ? aborted() : wrapProviderError(definition.name, error);
      }
    } finally {
      signal?.removeEventListener('abort', forward);
    }
    let ready: HostRecord | undefined;
    try {
      // contract v2 adapter: what the provider noted through ctx.checkpoint (and its claim) stays.
      const noted = (await this.inventoryFile.get(record.id))?.data ?? {};
      ready = await this.inventoryFile.patch(record.id, {
        hostname: provisioned.hostname,
        name: provisioned.name ?? record.name,
        connection: provisioned.connection,
        data: { ...noted, ...redact(provisioned.data ?? {}, 'drop') },
        state: 'ready',
        ...(provisioned.providerId ? { providerId: provisioned.providerId } : {}),
        ...(provisioned.leaseExpires ? { leaseExpires: provisioned.leaseExpires } : {}),
      });
    } catch (error) {
      await this.releaseFailed(impl, baseCtx, record, error);
      throw error;
    }
    if (!ready) {
      await this.releaseFailed(impl, baseCtx, record, new Error('record removed'));
      throw new BrokerError(`the inventory record of ${record.name} was removed while it was being checked out (another process checked it in); the host was released.`);
    }
    const HostCtor = (req.hostClass ?? this.hostClass) as unknown as HostClass<T>;
    const host = new HostCtor({ record: ready, owner: this.hostOwner });
    this.held.set(host.id, host);
    try {
      if (ready.connection?.kind === 'ssh' && req.waitForSsh !== false) {
        const transport = host.session.transport;
        if (transport instanceof SshTransport) await withAbort(withDeadline(transport.ready(), timeoutMs, `waiting for SSH on ${ready.name}`), signal, aborted);
      }
      if (bundles.length) {
        const { applyBundles } = await import('./bundles.js');
        await withAbort(applyBundles(host, bundles, this.settings, req.bundleVars ?? {}, { directory: this.directory }), signal, aborted);
      }
      // setup() is the caller's code: it is not interrupted, only not started after an abort.
      if (signal?.aborted) throw aborted();
      await host.setup();
    } catch (error) {
      // The host exists: release it through the normal path (teardown is skipped: setup did not finish).
      host.tornDown = true;
      // Closing the connection first ends commands still running on it (an interrupted bundle script).
      if (signal?.aborted) await host.disconnect().catch(() => undefined);
      await this.releaseHosts([host]).catch((e: unknown) =>
        this.logger.error(`could not release ${host.name} after ${signal?.aborted ? 'the checkout was aborted' : 'a failed setup'}; it stays in the inventory`, { error: asError(e).message }),
      );
      throw signal?.aborted ? aborted() : error;
    }
    return host;
  }

  private async releaseFailed(impl: ProviderImplementation, ctx: ProviderContext, record: HostRecord, cause: unknown): Promise<void> {
    // contract v2 adapter: hosts the failed checkout left behind are recorded as kept; the
    // provider is given the record as stored now (with what it noted through ctx.checkpoint).
    await this.recordDangling(record, cause);
    try {
      const current = (await this.inventoryFile.get(record.id)) ?? record;
      await impl.release(current, this.hostContext(ctx, record.id));
      await this.inventoryFile.remove(record.id);
    } catch (error) {
      // Keep the record so `checkin` or `sync` can find what may have been created.
      await this.inventoryFile.patch(record.id, { lastError: `checkout failed (${asError(cause).message}); release failed (${asError(error).message})` }).catch(() => undefined);
      this.logger.error(`could not release ${record.name} after its checkout failed; it stays in the inventory`, { id: record.id });
    }
  }

  // ---------------------------------------------------------------- checkin

  /**
   * Checks hosts in: teardown (for Host objects), release, forget. Concurrent; one failure never
   * stops the others; a record is removed only when its release succeeded.
   */
  async checkin(target: HostTarget, options: CheckinOptions = {}): Promise<void> {
    if (options.ifTestsPassed !== undefined) {
      const { junitPassed } = await import('./junit.js');
      const verdict = await junitPassed(options.ifTestsPassed);
      if (!verdict.passed) {
        // Kept, and no longer held: disposing this Broker must not check them in either.
        await this.keep(target, `tests did not pass (${verdict.summary}); kept for inspection`);
        return;
      }
    }
    const items = await this.resolveTarget(target);
    const hosts = items.map((i) => i.host ?? new this.hostClass({ record: i.record, owner: this.hostOwner }));
    for (const h of hosts) if (!items.find((i) => i.host === h)) h.tornDown = true; // records without a live object: no teardown
    const settled = await mapSettled(hosts, options.concurrency ?? 16, (h) => h.checkin());
    const failures = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ target: hosts[i]!.name, error: asError(s.reason) }] : []));
    if (failures.length === 1 && hosts.length === 1) throw failures[0]!.error;
    if (failures.length) throw new PartialFailureError(`${failures.length} of ${hosts.length} host(s) could not be checked in (their records are kept):`, failures);
  }

  /**
   * Keeps hosts for a person to look at: records `kept: { reason, at }` on their inventory
   * records, closes their sessions, and stops holding them, so disposing this Broker does not
   * check them in. They stay until checked in explicitly (`hostbroker checkin`).
   */
  async keep(target: HostTarget, reason: string): Promise<HostRecord[]> {
    const items = await this.resolveTarget(target);
    const at = new Date().toISOString();
    reason = scrub(reason); // a failure text may quote a password or token
    const kept = await this.inventoryFile.update((data) =>
      items.flatMap((item) => {
        const r = data.hosts.find((h) => h.id === item.record.id);
        if (r) r.kept = { reason, at };
        return r ? [structuredClone(r)] : [];
      }),
    );
    for (const { record, host } of items) {
      this.held.delete(record.id);
      await host?.disconnect().catch(() => undefined);
      this.dropSession(record.id);
    }
    this.logger.warn(`keeping ${kept.length} host(s): ${reason}`, { hosts: kept.map((r) => r.name) });
    return kept;
  }

  /** Teardown then release for live Host objects; the one code path of checkin. */
  private async releaseHosts(hosts: readonly Host[]): Promise<void> {
    let done = 0;
    const settled = await mapSettled(hosts, 16, async (host) => {
      const errors: FailureEntry[] = [];
      if (!host.tornDown) {
        host.tornDown = true;
        try {
          await host.teardown();
        } catch (error) {
          errors.push({ target: `${host.name} teardown`, error: asError(error) });
        }
      }
      try {
        await this.releaseRecord(host.record);
      } catch (error) {
        errors.push({ target: `${host.name} release`, error: asError(error) });
      } finally {
        await host.disconnect().catch(() => undefined);
        this.dropSession(host.id);
      }
      this.onProgress?.({ operation: 'checkin', done: ++done, total: hosts.length, host: host.name, outcome: errors.length ? 'failed' : 'ok' });
      if (errors.length === 1 && errors[0]!.target.endsWith('release')) throw errors[0]!.error;
      if (errors.length) throw new PartialFailureError(`checkin of ${host.name} had ${errors.length} error(s):`, errors);
    });
    const failures = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ target: hosts[i]!.name, error: asError(s.reason) }] : []));
    if (failures.length === 1 && hosts.length === 1) throw failures[0]!.error;
    if (failures.length) throw new PartialFailureError(`${failures.length} of ${hosts.length} host(s) could not be checked in:`, failures);
  }

  private async releaseRecord(record: HostRecord): Promise<void> {
    const current = await this.inventoryFile.get(record.id);
    if (!current) {
      this.held.delete(record.id);
      return; // already checked in (by another process or call)
    }
    const definition = this.definition(current.provider);
    const ctx = this.context(definition, current.instance);
    const impl = await this.implementation(current.provider);
    await this.inventoryFile.patch(current.id, { state: 'releasing' });
    try {
      await impl.release(current, this.hostContext(ctx, current.id)); // contract v2 adapter
    } catch (error) {
      await this.inventoryFile.patch(current.id, { state: current.state, lastError: asError(error).message }).catch(() => undefined);
      throw wrapProviderError(current.provider, error);
    }
    await this.inventoryFile.remove(current.id);
    this.held.delete(current.id);
    this.logger.info(`checked in ${current.name}`, { id: current.id, provider: current.provider });
  }

  // ---------------------------------------------------------------- other host actions

  /** Extends the lease of hosts whose provider supports it. */
  async extend(target: HostTarget, options: { lease?: Duration } = {}): Promise<void> {
    const items = await this.resolveTarget(target);
    const settled = await mapSettled(items, 16, async ({ record }) => {
      const impl = await this.implementation(record.provider);
      if (!impl.extend) throw new UserInputError(`provider \`${record.provider}\` has no leases to extend (${record.name}).`);
      const lease = options.lease ?? this.settings.checkout.lease;
      if (lease === undefined) throw new UserInputError(`say how long to extend ${record.name} for: pass { lease: '4h' } or set checkout.lease in settings.`);
      const leaseExpires = new Date(Date.now() + toMs(lease)).toISOString();
      const ctx = this.context(this.definition(record.provider), record.instance);
      try {
        await impl.extend(record, leaseExpires, this.hostContext(ctx, record.id)); // contract v2 adapter
      } catch (error) {
        throw wrapProviderError(record.provider, error);
      }
      await this.inventoryFile.patch(record.id, { leaseExpires });
    });
    const failures = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ target: items[i]!.record.name, error: asError(s.reason) }] : []));
    if (failures.length === 1 && items.length === 1) throw failures[0]!.error;
    if (failures.length) throw new PartialFailureError(`${failures.length} of ${items.length} lease(s) could not be extended:`, failures);
  }

  /**
   * Checks out new hosts with the same recipe as existing ones. With `signal`, an abort stops it
   * as it stops {@link checkout}, and the copies made before are released too.
   */
  async duplicate(target: HostTarget, options: { count?: number; signal?: AbortSignal } = {}): Promise<HostGroup<H>> {
    const items = await this.resolveTarget(target);
    const out: H[] = [];
    for (const { record } of items) {
      const { name: _name, ...args } = record.recipe.args;
      const request = { ...args, provider: record.recipe.provider, instance: record.recipe.instance, count: options.count ?? 1, ...(options.signal ? { signal: options.signal } : {}) } as unknown as CheckoutRequest<H> & { count: number };
      try {
        out.push(...(await this.checkout<H>(request)));
      } catch (error) {
        if (!options.signal?.aborted || !out.length) throw error;
        const released = await this.releaseHosts(out).then(
          () => `the ${out.length} copies made before were released`,
          (e: unknown) => `releasing the ${out.length} copies made before failed (${asError(e).message}); their records are kept for \`hostbroker checkin\``,
        );
        throw new TimeoutError(`${asError(error).message} Also, ${released}.`, 0, { cause: options.signal.reason });
      }
    }
    return HostGroup.fromHosts(out);
  }

  /** The inventory, optionally synced from providers first and filtered. */
  async inventory(options: { filter?: Filter<HostRecord>; sync?: boolean | string } = {}): Promise<HostRecord[]> {
    if (options.sync) await this.sync(options.sync === true ? undefined : options.sync);
    return applyFilter(await this.inventoryFile.hosts(), options.filter);
  }

  /**
   * Rebuilds the inventory from what providers report (by their tags): hosts created by another
   * process appear, hosts that are gone are removed. `provider` may be `name` or `name::instance`.
   */
  async sync(provider?: string): Promise<SyncResult> {
    const result: SyncResult = { added: [], updated: [], removed: [] };
    const targets: Array<{ name: string; instance?: string }> = [];
    if (provider) {
      const [name, instance] = provider.split('::');
      this.definition(name!);
      targets.push(instance ? { name: name!, instance } : { name: name! });
    } else {
      for (const name of this.definitions.keys()) {
        if (name === 'local' || this.settings.providers[name]) targets.push({ name });
      }
    }
    for (const t of targets) {
      const definition = this.definition(t.name);
      const impl = await this.implementation(t.name);
      if (!impl.inventory) {
        if (provider) throw new UserInputError(`provider \`${t.name}\` cannot list its hosts, so it cannot be synced.`);
        continue;
      }
      const ctx = this.context(definition, t.instance);
      let found: DiscoveredHost[];
      try {
        found = await impl.inventory(ctx);
      } catch (error) {
        throw wrapProviderError(t.name, error);
      }
      await this.inventoryFile.update((data) => {
        const seen = new Set<string>();
        for (const d of found) {
          const existing = data.hosts.find((h) => (d.id && h.id === d.id) || (d.providerId && h.provider === t.name && h.providerId === d.providerId));
          if (existing) {
            seen.add(existing.id);
            // A checkout or release under way (or cut off) keeps its state: `releasing` tells
            // checkin and reap to finish the job even though the provider still has the host.
            const busy = existing.state === 'provisioning' || existing.state === 'releasing';
            Object.assign(existing, { hostname: d.hostname, connection: d.connection, state: busy ? existing.state : 'ready' });
            if (d.providerId) existing.providerId = d.providerId;
            if (d.data) existing.data = redact(d.data, 'drop');
            result.updated.push(existing);
            continue;
          }
          const record: HostRecord = {
            id: d.id ?? newRecordId(),
            name: d.name ?? d.hostname,
            hostname: d.hostname,
            provider: t.name,
            instance: ctx.instance,
            state: 'ready',
            recipe: d.recipe ?? { provider: t.name, instance: ctx.instance, args: {} },
            owner: d.owner ?? this.owner,
            brokerId: d.brokerId ?? this.brokerId,
            createdAt: d.createdAt ?? new Date().toISOString(),
            connection: d.connection,
            data: redact(d.data ?? {}, 'drop'),
          };
          if (d.providerId) record.providerId = d.providerId;
          if (d.leaseExpires) record.leaseExpires = d.leaseExpires;
          seen.add(record.id);
          data.hosts.push(record);
          result.added.push(record);
        }
        // Ready hosts of this provider instance that the provider no longer has are gone.
        data.hosts = data.hosts.filter((h) => {
          const gone = h.provider === t.name && h.instance === ctx.instance && h.state === 'ready' && !seen.has(h.id);
          if (gone) result.removed.push(h);
          return !gone;
        });
      });
    }
    return result;
  }

  /**
   * Removes what killed processes left behind: records stuck in `provisioning` whose process is
   * gone (released through their provider), and provider resources tagged by this broker whose
   * record is gone or whose lease has passed.
   */
  async reap(provider?: string): Promise<{ released: HostRecord[]; removed: string[] }> {
    const released: HostRecord[] = [];
    const removed: string[] = [];
    const here = machineHostname();
    const stale = (await this.inventoryFile.hosts()).filter(
      (h) => (!provider || h.provider === provider) && h.state !== 'ready' && h.machine === here && h.pid !== undefined && h.pid !== process.pid && !isProcessAlive(h.pid),
    );
    for (const record of stale) {
      try {
        await this.releaseRecord(record);
        released.push(record);
      } catch (error) {
        this.logger.warn(`could not reap ${record.name}`, { error: asError(error).message });
      }
    }
    const names = provider ? [provider] : [...this.definitions.keys()].filter((n) => n === 'local' || this.settings.providers[n]);
    for (const name of names) {
      const impl = await this.implementation(name);
      const definition = this.definition(name);
      for (const instance of instancesOf(this.settings, name)) removed.push(...(await this.reapResources(impl, this.context(definition, instance))));
    }
    return { released, removed };
  }

  // ---- contract v2 adapter (providers branch; lib/broker/adapter-v2.ts): the lead ports this.
  private reapResources(impl: ProviderImplementation, ctx: ProviderContext): Promise<string[]> {
    return v2.reapResources(impl, ctx, { inventory: this.inventoryFile, brokerId: this.brokerId, logger: this.logger, releaseRecord: (r) => this.releaseRecord(r), wrap: wrapProviderError });
  }

  private recordDangling(record: HostRecord, error: unknown): Promise<void> {
    return v2.recordDangling(this.inventoryFile, record, error, this.logger);
  }

  private hostContext(base: ProviderContext, recordId: string, signal?: AbortSignal): HostContext {
    return v2.hostContext(this.inventoryFile, base, recordId, signal);
  }
  // ---- end of the contract v2 adapter

  /** Runs a provider action that creates no host. */
  async execute(request: ExecuteRequest): Promise<unknown> {
    const { provider, action, instance, ...rest } = request;
    const definition = this.definition(provider);
    const actionDef: ProviderActionDefinition | undefined = definition.actions?.[action];
    if (!actionDef) {
      const known = Object.keys(definition.actions ?? {});
      throw new UserInputError(`provider \`${provider}\` has no action \`${action}\`; ${known.length ? `actions: ${known.join(', ')}` : 'it has no actions'}.`);
    }
    const parsed = actionDef.schema.safeParse(rest);
    if (!parsed.success) throw new UserInputError(`invalid arguments for ${provider} action \`${action}\`: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('; ')}.`);
    const impl = await this.implementation(provider);
    // contract v2 adapter: one typed function per action.
    const run = impl.actions?.[action];
    if (!run) throw new ProviderError(provider, `the implementation has no function for its action \`${action}\`; it does not match its definition.`);
    try {
      return await run(parsed.data, this.context(definition, instance));
    } catch (error) {
      throw wrapProviderError(provider, error);
    }
  }

  /** The providers, their arguments and actions (from their zod schemas). */
  providers(): ProviderInfo[] {
    return [...this.definitions.values()].map((d) => ({
      name: d.name,
      description: d.description,
      arguments: describeArgs(d.args),
      actions: Object.fromEntries(Object.entries<ProviderActionDefinition>(d.actions ?? {}).map(([k, a]) => [k, { description: a.description, arguments: describeArgs(a.schema) }])),
      instances: instancesOf(this.settings, d.name),
    }));
  }

  /** Live help from a provider's service (workflows, images, machines...). */
  async describeProvider(provider: string, topic?: string, instance?: string): Promise<Record<string, unknown>> {
    const definition = this.definition(provider);
    const impl = await this.implementation(provider);
    if (!impl.describe) return {};
    try {
      return await impl.describe(this.context(definition, instance), topic);
    } catch (error) {
      throw wrapProviderError(provider, error);
    }
  }

  /** A live Host from an inventory record (works in any process). */
  reconstruct<T extends Host = H>(record: HostRecord | string, hostClass?: HostClass<T>): T {
    if (typeof record === 'string') throw new UserInputError('reconstruct takes a record; use `await broker.find(id)` to look one up first.');
    const Ctor = (hostClass ?? this.hostClass) as unknown as HostClass<T>;
    return new Ctor({ record, owner: this.hostOwner });
  }

  /**
   * Provisions a multi-host topology (mrack-style metadata: YAML text, a file path, or an object)
   * on one or many providers at once. See docs/topologies.md.
   */
  async up(metadata: string | TopologyMetadata, options: UpOptions<H> = {}): Promise<Deployment<H>> {
    return (await import('./topology/up.js')).up(this, metadata, options);
  }

  /** A deployment made by `up` (in this or another process), by id or name; the only one when omitted. */
  async deployment(key?: string): Promise<Deployment<H>> {
    return (await import('./topology/deployment.js')).openDeployment(this, key);
  }

  /** Finds one record by id, name or hostname. */
  async find(key: string): Promise<HostRecord | undefined> {
    const all = await this.inventoryFile.hosts();
    return all.find((h) => h.id === key) ?? all.find((h) => h.name === key) ?? all.find((h) => h.hostname === key);
  }

  /** Checks in what this Broker checked out and still holds. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      const hosts = [...this.held.values()];
      if (hosts.length) await this.checkin(hosts);
    } finally {
      await this.close();
    }
  }

  /** Closes sessions and provider clients (hosts stay checked out). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.sessions.values()].map((s) => s.close()));
    this.sessions.clear();
    for (const p of this.implementations.values()) await p.then((impl) => impl.close?.()).catch(() => undefined);
  }

  // ---------------------------------------------------------------- internals

  /** The session for a record: SSH, or the provider's own transport. Shared per record. */
  sessionFor(record: HostRecord): Session {
    const existing = this.sessions.get(record.id);
    if (existing) return existing;
    const connection = record.connection;
    if (!connection) throw new HostConnectionError(`${record.name} has no connection details yet (state ${record.state}); wait for its checkout to finish or run sync.`);
    let transport: Transport;
    if (connection.kind === 'ssh') {
      const ssh = this.settings.ssh;
      transport = new SshTransport({
        connection,
        connectTimeout: toMs(ssh.connectTimeout),
        readyTimeout: toMs(ssh.readyTimeout),
        keepaliveInterval: toMs(ssh.keepaliveInterval),
        keepaliveCountMax: ssh.keepaliveCountMax,
        channelsPerConnection: ssh.channelsPerConnection,
        maxConnections: ssh.maxConnections,
        bulkStreams: ssh.bulkStreams,
        hostKeyPolicy: ssh.hostKeyPolicy,
        ...(ssh.privateKeyPath ? { defaultPrivateKeyPath: ssh.privateKeyPath } : {}),
        ...(ssh.passwordEnv ? { defaultPasswordEnv: ssh.passwordEnv } : {}),
        label: `${record.name} (${connection.username}@${connection.host}:${connection.port})`,
        onHostKey: (fp) => this.recordHostKey(record.id, fp),
      });
    } else {
      transport = lazyTransport(record.name, async () => {
        const impl = await this.implementation(record.provider);
        if (!impl.transport) throw new ProviderError(record.provider, `hosts of this provider have no session of their own; ${record.name} cannot be reached.`);
        return impl.transport(record, this.context(this.definition(record.provider), record.instance));
      });
    }
    const session = new Session(transport);
    this.sessions.set(record.id, session);
    return session;
  }

  private dropSession(id: string): void {
    this.sessions.delete(id);
  }

  private async recordHostKey(id: string, fp: string): Promise<void> {
    await this.inventoryFile.update((data) => {
      const r = data.hosts.find((h) => h.id === id);
      if (r?.connection?.kind === 'ssh' && !r.connection.hostKey) r.connection.hostKey = fp;
    });
  }

  /** The definition of a provider, or a UserInputError listing the known ones. */
  definition(name: string): AnyProviderDefinition {
    const d = this.definitions.get(name);
    if (!d) throw new UserInputError(`unknown provider \`${name}\`; known providers: ${[...this.definitions.keys()].join(', ')}.`);
    return d;
  }

  private implementation(name: string): Promise<ProviderImplementation> {
    let p = this.implementations.get(name);
    if (!p) {
      p = this.definition(name).load() as Promise<ProviderImplementation>;
      this.implementations.set(name, p);
      p.catch(() => this.implementations.delete(name));
    }
    return p;
  }

  /** The context a provider gets for an instance. */
  context(definition: AnyProviderDefinition, instance?: string): ProviderContext {
    const resolved = resolveInstance(this.settings, definition.name, instance);
    return {
      provider: definition.name,
      instance: resolved.name,
      instanceSettings: validateInstance(definition, resolved.name, resolved.values),
      settings: this.settings,
      directory: this.directory,
      brokerId: this.brokerId,
      owner: this.owner,
      logger: this.logger,
      signal: new AbortController().signal,
      holders: v2.holdersOf(this.inventoryFile, definition.name), // contract v2 adapter
    };
  }

  private async resolveTarget(target: HostTarget): Promise<Array<{ record: HostRecord; host?: Host }>> {
    const all = await this.inventoryFile.hosts();
    if (target instanceof Host) return [{ record: target.record, host: target }];
    if (typeof target === 'string') return [{ record: this.lookup(all, target) }];
    if (isRecord(target)) return [{ record: target }];
    if (typeof target === 'object' && target !== null && ('all' in target || 'filter' in target) && !isIterable(target)) {
      const t = target as { all?: boolean; filter?: Filter<HostRecord> };
      if ('all' in t && t.all !== true) throw new UserInputError('use { all: true } to act on every host.');
      return applyFilter(all, t.filter).map((record) => ({ record, host: this.held.get(record.id) }));
    }
    if (isIterable(target)) {
      const out: Array<{ record: HostRecord; host?: Host }> = [];
      for (const item of target) {
        if (item instanceof Host) out.push({ record: item.record, host: item });
        else if (typeof item === 'string') out.push({ record: this.lookup(all, item) });
        else if (isRecord(item)) out.push({ record: item });
        else throw new UserInputError(`cannot act on ${JSON.stringify(item)}: give Hosts, records, ids or names.`);
      }
      return out;
    }
    throw new UserInputError('give a Host, a HostGroup, an array, an id or name, { all: true } or { filter }.');
  }

  private lookup(all: HostRecord[], key: string): HostRecord {
    const found = all.find((h) => h.id === key) ?? all.find((h) => h.name === key) ?? all.find((h) => h.hostname === key);
    if (!found) throw new UserInputError(`no host \`${key}\` in the inventory ${this.inventoryFile.path}; run \`hostbroker inventory\` to see what is there.`);
    return found;
  }
}

function isIterable(v: unknown): v is Iterable<Host | HostRecord | string> {
  return typeof v === 'object' && v !== null && Symbol.iterator in v;
}

function isRecord(v: unknown): v is HostRecord {
  return typeof v === 'object' && v !== null && !(v instanceof Host) && typeof (v as HostRecord).id === 'string' && typeof (v as HostRecord).provider === 'string';
}

/** Names of the instances of a provider in settings (`default` when none are named). */
function instancesOf(settings: Settings, provider: string): string[] {
  const names = Object.keys(settings.providers[provider]?.instances ?? {});
  return names.length ? names : ['default'];
}

/** Makes the errors of one aborted operation and recognises them among its failures. */
function abortErrors(what: string, signal: AbortSignal | undefined): { make: () => TimeoutError; isOwn: (error: unknown) => boolean } {
  const own = new WeakSet<object>();
  return {
    make: () => {
      const error = new TimeoutError(`${what} was aborted${signal ? abortReason(signal) : ''}`, 0, { cause: signal?.reason });
      own.add(error);
      return error;
    },
    isOwn: (error) => typeof error === 'object' && error !== null && own.has(error),
  };
}

function wrapProviderError(provider: string, error: unknown): Error {
  if (BrokerError.isInstance(error)) return error;
  // A service's error text may quote a registered password or token.
  return new ProviderError(provider, scrub(asError(error).message), { cause: error });
}

/** A transport that is created on first use (providers load asynchronously). */
function lazyTransport(label: string, make: () => Promise<Transport>): Transport {
  let inner: Promise<Transport> | undefined;
  const get = (): Promise<Transport> => (inner ??= make());
  return {
    label,
    spawn: async (command, options) => (await get()).spawn(command, options),
    spawnShell: async (options) => {
      const t = await get();
      return t.spawnShell ? t.spawnShell(options) : t.spawn('exec "${SHELL:-/bin/sh}" -l', options);
    },
    readFile: async (path) => {
      const t = await get();
      if (t.readFile) return t.readFile(path);
      return new Session(t).read(path);
    },
    writeFile: async (path, data, mode) => {
      const t = await get();
      if (t.writeFile) return t.writeFile(path, data, mode);
      return new Session(t).write(data, path, mode === undefined ? {} : { mode });
    },
    close: async () => {
      if (inner) await (await inner).close();
    },
  };
}
