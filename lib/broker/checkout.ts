/**
 * Checkout: resolve and validate the request, record intent, ask the provider for each host
 * (concurrently, with deadlines and the caller's signal), record what came back, wait for SSH,
 * apply bundles, run `setup()`, and apply the failure policy.
 * @module
 */
import { setMaxListeners } from 'node:events';
import type { Host, HostClass } from '../../hosts/host.js';
import { HostGroup } from '../../hosts/host-group.js';
import { type ReadinessCheck, validateCheck, waitUntilReady } from '../../hosts/readiness.js';
import { abortReason, abortedBeforeStart, mapSettled, outcomes, signalOption, withAbort, withDeadline } from '../concurrency.js';
import { AbortedError, BrokerError, PartialFailureError, ProviderError, UserInputError, asError, type FailureEntry } from '../errors.js';
import type { ProviderImplementation, ProvisionedHost } from '../provider.js';
import type { HostRecord, JumpHost } from '../records.js';
import { mergeRequest } from '../requests.js';
import { parseJumpOption, withSshDefaults } from '../ssh-defaults.js';
import { redact } from '../secrets.js';
import { toMs } from '../settings.js';
import type { BrokerCore } from './core.js';
import { releaseHostRecord } from './release.js';
import { intentRecord, recordDangling } from './records.js';
import type { ProviderRuntime } from './runtime.js';
import { syncKnownHosts } from './sessions.js';
import { MAX_COUNT, type CheckoutOptions, type CheckoutRequest } from './types.js';

/** Everything one checkout decided before any host is asked for. */
interface Plan<T extends Host> {
  runtime: ProviderRuntime;
  impl: ProviderImplementation;
  args: Record<string, unknown>;
  /** How many hosts in all. */
  count: number;
  timeoutMs: number;
  bundles: string[];
  bundleVars: Record<string, string>;
  waitForSsh: boolean;
  hostClass: HostClass<T> | undefined;
  /** The caller's signal. */
  signal: AbortSignal | undefined;
  /** What this checkout is, for messages. */
  what: string;
  /** Readiness checks before the host is handed out. */
  waitFor: readonly ReadinessCheck[];
  /** Jump hosts the request names (they win over the provider's and the settings'). */
  jump: JumpHost[] | undefined;
}

/** Checks out one host (no count) or a HostGroup. */
export async function checkout<T extends Host>(core: BrokerCore, request: CheckoutRequest<T>): Promise<T | HostGroup<T>> {
  if (request === null || typeof request !== 'object')
    throw new UserInputError('checkout needs a request object, e.g. { provider: "local" } or { nick: "rhel9" }.');
  const req = request as Record<string, unknown> & CheckoutOptions<T>;
  const signal = signalOption(req.signal);
  const { provider, args: rawArgs, nick } = mergeRequest(req, core.settings);
  const count = req.count;
  if (count !== undefined && (!Number.isInteger(count) || count < 1))
    throw new UserInputError(`count must be a whole number of at least 1, not ${JSON.stringify(count)}.`);
  // A huge count would build that many intent records (or throw a RangeError) before any check.
  if (count !== undefined && count > MAX_COUNT)
    throw new UserInputError(`count ${count} is more than ${MAX_COUNT} hosts in one checkout; check out in several smaller groups.`);
  const n = count ?? 1;
  const what = `checkout of ${n} host(s) from ${provider}`;
  if (signal?.aborted) throw abortedBeforeStart(what, signal);
  const runtime = core.runtime(provider);
  const args = runtime.parseArgs(rawArgs);
  const instance = runtime.instance(req.instance).name;
  // Loaded before any record is written: a missing SDK must leave nothing behind.
  const impl = await runtime.implementation();
  const bundles = [...core.settings.checkout.bundles, ...(req.bundles ?? [])];
  if (bundles.length) {
    // A misspelt or invalid bundle fails before anything is provisioned.
    const { parseBundle } = await import('../bundles.js');
    for (const name of bundles) parseBundle(core.settings, name);
  }
  const lease = req.lease ?? core.settings.checkout.lease;
  const leaseMs = lease !== undefined ? toMs(lease) : undefined;
  const plan: Plan<T> = {
    runtime,
    impl,
    args,
    count: n,
    timeoutMs: toMs(req.timeout ?? core.settings.checkout.timeout),
    bundles,
    bundleVars: req.bundleVars ?? {},
    waitForSsh: req.waitForSsh !== false,
    hostClass: req.hostClass,
    // One listener on the caller's signal; each running host listens on this derived one, whose
    // listener count grows with the concurrency (Node warns past 10 on a signal it does not know to allow).
    signal: signal && unlimited(AbortSignal.any([signal])),
    what,
    waitFor: (req.waitFor ?? []).map((c) => validateCheck(c, 'checkout waitFor')),
    jump: parseJumpOption(req.jump),
  };
  if (signal?.aborted) throw abortedBeforeStart(what, signal);

  const records = Array.from({ length: n }, (_, i) =>
    intentRecord(core, { provider, instance, args, nick, index: i, count: n, leaseMs, deployment: req.deployment }),
  );
  if (req.reuseMark) for (const r of records) r.data = { ...r.data, reuse: req.reuseMark };
  await core.store.add(records);
  core.logger.info(`checking out ${n} host(s) from ${provider}`, { instance, ids: records.map((r) => r.id) });

  let done = 0;
  /** Indexes whose provider checkout never started because the signal came first. */
  const notStarted = new Set<number>();
  const settled = await mapSettled(records, req.concurrency ?? core.settings.checkout.concurrency, async (record, index) => {
    if (signal?.aborted) {
      notStarted.add(index);
      throw stopped(plan);
    }
    try {
      const host = await provisionOne(core, plan, record, index);
      core.progress({ operation: 'checkout', done: ++done, total: n, host: host.name, outcome: 'ok' });
      return host;
    } catch (error) {
      core.progress({ operation: 'checkout', done: ++done, total: n, host: record.name, outcome: 'failed' });
      throw error;
    }
  });

  const o = outcomes(records, settled, (r) => r.name);
  const hosts = o.values;
  if (signal?.aborted) {
    throw await abandon(
      core,
      plan,
      records,
      hosts,
      notStarted,
      o.failures.filter((f) => !(f.error instanceof AbortedError)),
    );
  }
  const policy = req.onPartialFailure ?? core.settings.checkout.onPartialFailure;
  if (o.failures.length && (policy === 'abort' || hosts.length === 0)) {
    const failures: FailureEntry[] = [...o.failures];
    const released = await releaseAll(core, hosts);
    if (released) failures.push({ target: 'releasing the hosts that did succeed', error: released });
    if (count === undefined && failures.length === 1) throw failures[0]!.error;
    throw new PartialFailureError(
      `${what} failed for ${o.failures.length}; ${hosts.length ? `the ${hosts.length} that succeeded were released` : 'none succeeded'}:`,
      failures,
      hosts.map((h) => h.record),
    );
  }
  if (o.failures.length)
    core.logger.warn(`${o.failures.length} of ${n} hosts failed; keeping the ${hosts.length} that succeeded`, {
      failures: o.failures.map((f) => `${f.target}: ${f.error.message}`),
    });
  if (count === undefined) return hosts[0]!;
  return HostGroup.fromHosts(hosts, o.failures);
}

function unlimited(signal: AbortSignal): AbortSignal {
  setMaxListeners(0, signal);
  return signal;
}

/** The inner error of an aborted checkout, for one host (the caller sees {@link abandon}'s). */
function stopped(plan: Plan<Host>): AbortedError {
  return new AbortedError(`${plan.what} was aborted${plan.signal ? abortReason(plan.signal) : ''}`, { reason: plan.signal?.reason });
}

/** Provisions one host and hands it out ready: recorded, reachable, bundles applied, set up. */
async function provisionOne<T extends Host>(core: BrokerCore, plan: Plan<T>, record: HostRecord, index: number): Promise<T> {
  const { runtime, impl } = plan;
  const started = Date.now();
  const aborted = (): AbortedError => stopped(plan);
  const deadline = new AbortController();
  // The provider hears of the caller's abort and of the deadline through one signal.
  const signal = plan.signal ? AbortSignal.any([plan.signal, deadline.signal]) : deadline.signal;
  let provisioned: ProvisionedHost;
  const work = impl.checkout(plan.args, { record, index, count: plan.count }, runtime.hostContext(record, signal));
  try {
    provisioned = await withDeadline(withAbort(work, plan.signal, aborted), plan.timeoutMs, `checkout of ${record.name} from ${runtime.name}`, deadline);
  } catch (error) {
    // Let a provider that ignores the abort finish before releasing, so nothing is left behind.
    await withDeadline(work, 30_000, 'abandoned checkout').catch(() => undefined);
    await releaseFailed(core, runtime, record, error);
    throw plan.signal?.aborted ? aborted() : runtime.wrap(error);
  }
  const ready = await core.store
    .patch(
      record.id,
      (current) => ({
        hostname: provisioned.hostname,
        name: provisioned.name ?? record.name,
        connection: withSshDefaults(provisioned.connection, plan.jump, core.settings, (m) => core.logger.warn(m)),
        // What the provider noted through ctx.checkpoint stays.
        data: { ...current.data, ...redact(provisioned.data ?? {}, 'drop') },
        state: 'ready',
        ...(provisioned.providerId ? { providerId: provisioned.providerId } : {}),
        ...(provisioned.ports ? { ports: provisioned.ports } : {}),
        ...(provisioned.leaseExpires ? { leaseExpires: provisioned.leaseExpires } : {}),
      }),
      { state: 'provisioning' },
    )
    .catch(async (error: unknown) => {
      await releaseFailed(core, runtime, record, error);
      throw error;
    });
  await syncKnownHosts(core, [ready]);
  if (!ready) {
    await releaseFailed(core, runtime, record, new Error('record removed'));
    throw new BrokerError(
      `the inventory record of ${record.name} was removed while it was being checked out (another process checked it in); the host was released.`,
    );
  }
  const host = core.makeHost(ready, plan.hostClass);
  core.held.set(host.id, host);
  try {
    if (ready.connection?.kind === 'ssh' && plan.waitForSsh) {
      await withAbort(withDeadline(host.session.ready(), plan.timeoutMs, `waiting for SSH on ${ready.name}`), plan.signal, aborted);
    }
    if (plan.bundles.length) {
      const { applyBundles } = await import('../bundles.js');
      await withAbort(applyBundles(host, plan.bundles, core.settings, plan.bundleVars, { directory: core.directory }), plan.signal, aborted);
    }
    if (plan.waitFor.length) {
      // Counted in the checkout's timeout: what is left of it after provisioning.
      const timeout = Math.max(1, plan.timeoutMs - (Date.now() - started));
      await withAbort(waitUntilReady(host, plan.waitFor, { timeout, ...(plan.signal ? { signal: plan.signal } : {}) }), plan.signal, aborted);
    }
    // setup() is the caller's code: it is not interrupted, only not started after an abort.
    if (plan.signal?.aborted) throw aborted();
    await host.setup();
  } catch (error) {
    // The host exists: release it (no teardown: setup did not finish). Closing the connection
    // first ends commands still running on it (an interrupted bundle script).
    if (plan.signal?.aborted) await host.disconnect().catch(() => undefined);
    await releaseHostRecord(core, host.record).catch((e: unknown) =>
      core.logger.error(
        `could not release ${host.name} after ${plan.signal?.aborted ? 'the checkout was aborted' : 'a failed setup'}; it stays in the inventory`,
        { error: asError(e).message },
      ),
    );
    throw plan.signal?.aborted ? aborted() : error;
  }
  return host;
}

/**
 * Releases what a failed provider checkout may have made, with the record as stored (the
 * provider may have noted a job id on it), and forgets it; on failure the record stays with
 * `lastError`, for `checkin` or `reap`. Hosts the provider says it left behind are recorded as kept.
 */
async function releaseFailed(core: BrokerCore, runtime: ProviderRuntime, record: HostRecord, cause: unknown): Promise<void> {
  if (cause instanceof ProviderError && cause.dangling.length) await recordDangling(core, record, cause);
  const current = (await core.store.get(record.id).catch(() => undefined)) ?? record;
  try {
    // The base context: this checkout's signal may be aborted, and a release honouring it would give up at once.
    await runtime.call((impl) => impl.release(current, runtime.hostContext(current)));
    await core.store.remove([record.id]);
  } catch (error) {
    // Keep the record so `checkin` or `sync` can find what may have been created.
    await core.store
      .patch(record.id, { lastError: `checkout failed (${asError(cause).message}); release failed (${asError(error).message})` })
      .catch(() => undefined);
    core.logger.error(`could not release ${record.name} after its checkout failed; it stays in the inventory`, { id: record.id });
  }
}

/** Releases hosts a failed checkout made; the error of that, if any (their records are kept). */
async function releaseAll(core: BrokerCore, hosts: readonly Host[]): Promise<Error | undefined> {
  const settled = await mapSettled(hosts, 16, (h) => releaseHostRecord(core, h.record));
  const o = outcomes(hosts, settled, (h) => h.name);
  if (!o.failures.length) return undefined;
  return o.failures.length === 1
    ? o.failures[0]!.error
    : new PartialFailureError(`${o.failures.length} of ${hosts.length} host(s) could not be released:`, o.failures);
}

/**
 * After an aborted checkout: forgets the records no provider was asked about, releases the
 * hosts that were made, and returns the AbortedError that says what was released and kept.
 */
async function abandon(
  core: BrokerCore,
  plan: Plan<Host>,
  records: HostRecord[],
  hosts: readonly Host[],
  notStarted: ReadonlySet<number>,
  failures: FailureEntry[],
): Promise<AbortedError> {
  const skipped = records.filter((_, i) => notStarted.has(i)).map((r) => r.id);
  // No provider was asked for these, so there is nothing to release.
  if (skipped.length)
    await core.store
      .remove(skipped)
      .catch((e: unknown) => core.logger.warn('could not remove the records of hosts that were never started', { error: asError(e).message }));
  await releaseAll(core, hosts); // what failed keeps its record, read below
  const names = new Map(records.map((r) => [r.id, r.name]));
  for (const h of hosts) names.set(h.id, h.name);
  const left = new Map((await core.store.list().catch(() => [] as HostRecord[])).map((h) => [h.id, h]));
  const kept = records.filter((r) => left.has(r.id));
  const released = records.filter((r) => !left.has(r.id) && !skipped.includes(r.id));
  const parts = [`released ${released.length}${released.length ? ` (${released.map((r) => names.get(r.id)).join(', ')})` : ''}`];
  if (skipped.length) parts.push(`${skipped.length} never started`);
  if (kept.length) {
    const list = kept.map((r) => `${names.get(r.id)}${left.get(r.id)?.lastError ? `: ${left.get(r.id)!.lastError}` : ''}`).join('; ');
    parts.push(
      `kept ${kept.length} in the inventory because releasing failed (${list}); check them in later with \`hostbroker checkin ${kept.map((r) => r.id).join(' ')}\` or \`hostbroker reap\``,
    );
  }
  if (failures.length) parts.push(`failed before the abort: ${failures.map((f) => `${f.target}: ${f.error.message}`).join('; ')}`);
  const head = `${plan.what} was aborted${plan.signal ? abortReason(plan.signal) : ''}`;
  core.logger.info(`${head}; ${parts.join('; ')}`);
  return new AbortedError(`${head}: ${parts.join('; ')}.`, {
    released: released.map((r) => names.get(r.id)!),
    kept: kept.map((r) => r.id),
    neverStarted: skipped.length,
    failed: failures,
    reason: plan.signal?.reason,
  });
}
