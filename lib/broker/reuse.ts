/**
 * Warm reuse: `checkout({ reuse: true })` hands out a free, ready host of this owner from the pool
 * whose recipe (provider, instance, arguments, bundles) hashes the same, instead of making one;
 * checking such a host in runs its `reset` command and puts it back (`pooled` on its record)
 * instead of releasing it. Hosts idle in the pool longer than `checkout.reuseIdle` are released
 * by the next checkin, reap or fixture global set-up.
 *
 * Every move into or out of the pool is one conditional `store.patch` (a function of the current
 * record, atomic with the write on the file store's lock and the etcd store's compare-and-swap),
 * so two processes, on one machine or many, never take the same host.
 * @module
 */
import { createHash, randomUUID } from 'node:crypto';
import { hostname as machineHostname } from 'node:os';
import type { Host } from '../../hosts/host.js';
import { HostGroup } from '../../hosts/host-group.js';
import { waitUntilReady } from '../../hosts/readiness.js';
import { withDeadline } from '../concurrency.js';
import { asError } from '../errors.js';
import type { HostRecord } from '../records.js';
import { mergeRequest } from '../requests.js';
import { redact } from '../secrets.js';
import { toMs } from '../settings.js';
import type { BrokerCore } from './core.js';
import { releaseHostRecord } from './release.js';
import { sessionFor } from './sessions.js';
import type { CheckoutOptions, CheckoutRequest, ReuseMark } from './types.js';

/** How long a pooled host has to answer `true` before it is taken for dead. */
const ALIVE_MS = 5000;

/** JSON with sorted keys, so equal recipes give equal text. */
function stable(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stable).join(',')}]`;
  if (value && typeof value === 'object')
    return `{${Object.keys(value)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stable((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value) ?? 'null';
}

/**
 * The recipe hash pooled hosts are matched by: provider, instance and validated arguments (secrets
 * dropped, as in the recorded recipe), and the bundles when there are any.
 */
export function recipeHash(recipe: {
  provider: string;
  instance: string;
  args: Record<string, unknown>;
  bundles?: readonly string[];
  bundleVars?: Record<string, string>;
}): string {
  const { provider, instance, args, bundles = [], bundleVars = {} } = recipe;
  const extra = bundles.length ? { bundles, bundleVars } : {};
  return createHash('sha256')
    .update(stable({ provider, instance, args: redact(args, 'drop'), ...extra }))
    .digest('hex')
    .slice(0, 32);
}

function markOf(record: HostRecord): ReuseMark | undefined {
  const mark = record.data?.reuse as ReuseMark | undefined;
  return mark && typeof mark.recipe === 'string' ? mark : undefined;
}

/**
 * Takes a pooled record out of the pool if `wanted(current)` still holds, atomically; the record
 * as claimed, or undefined when another process got there first (or it changed).
 */
async function claim(core: BrokerCore, id: string, wanted: (current: HostRecord) => boolean, extra: Partial<ReuseMark> = {}): Promise<HostRecord | undefined> {
  const token = randomUUID();
  const next = await core.store.patch(
    id,
    (current) =>
      current.pooled && !current.kept && wanted(current)
        ? { pooled: undefined, pid: process.pid, machine: machineHostname(), data: { ...current.data, reuse: { ...markOf(current), ...extra, claim: token } } }
        : undefined,
    { state: 'ready' },
  );
  return next && !next.pooled && markOf(next)?.claim === token ? next : undefined;
}

/** Checkout with `reuse`: pooled hosts first, then fresh ones (marked to return to the pool) for the rest. */
export async function reuseCheckout<T extends Host>(
  core: BrokerCore,
  request: CheckoutRequest<T>,
  fresh: (request: CheckoutRequest<T>) => Promise<T | HostGroup<T>>,
): Promise<T | HostGroup<T>> {
  const req = request as Record<string, unknown> & CheckoutOptions<T>;
  const { provider, args: rawArgs } = mergeRequest(req, core.settings);
  const runtime = core.runtime(provider);
  const args = runtime.parseArgs(rawArgs);
  const instance = runtime.instance(req.instance).name;
  const bundles = [...core.settings.checkout.bundles, ...(req.bundles ?? [])];
  const mark: ReuseMark = {
    recipe: recipeHash({ provider, instance, args, bundles, bundleVars: req.bundleVars ?? {} }),
    ...(req.reset ? { reset: req.reset } : {}),
  };
  const n = req.count ?? 1;
  const records = await core.store.list();
  await expireIdle(core, Date.now(), records);
  const warm = await claimPooled(core, mark, n, req, records);
  if (warm.length === n) return req.count === undefined ? warm[0]! : HostGroup.fromHosts(warm);
  const { reuse: _reuse, ...rest } = req;
  try {
    const made = await fresh({ ...rest, reuseMark: mark, ...(req.count !== undefined ? { count: n - warm.length } : {}) } as unknown as CheckoutRequest<T>);
    if (req.count === undefined) return made as T;
    const group = made as HostGroup<T>;
    return HostGroup.fromHosts([...warm, ...group], group.failures);
  } catch (error) {
    // The pooled hosts this checkout took go back.
    await Promise.allSettled(warm.map((h) => h.checkin()));
    throw error;
  }
}

/** Resolves when the host answers `true` within {@link ALIVE_MS}; rejects saying why not. */
async function answers(host: Host, name: string): Promise<void> {
  const r = await withDeadline(host.execute('true', { timeout: ALIVE_MS, check: false }), ALIVE_MS, `pooled host ${name} answering \`true\``);
  if (r.status !== 0) throw new Error(`\`true\` exited ${r.status}`);
}

/** Claims up to `n` pooled hosts of the recipe, most recently pooled first, each checked to answer. */
async function claimPooled<T extends Host>(
  core: BrokerCore,
  mark: ReuseMark,
  n: number,
  req: CheckoutOptions<T>,
  records: readonly HostRecord[],
): Promise<T[]> {
  const out: T[] = [];
  const matches = (r: HostRecord): boolean => r.pooled?.recipe === mark.recipe && r.owner === core.owner;
  const candidates = records.filter((r) => matches(r) && r.state === 'ready' && !r.kept).sort((a, b) => b.pooled!.at.localeCompare(a.pooled!.at));
  const timeoutMs = toMs(req.timeout ?? core.settings.checkout.timeout);
  for (const candidate of candidates) {
    if (out.length >= n || req.signal?.aborted) break;
    // A pooled host may have died meanwhile (its container removed, the machine rebooted). The
    // probe (`true`, harmless on a host another process takes) runs while the claim is written;
    // a dead host's SSH would be retried for the whole ssh.readyTimeout, a live one answers at once.
    const probe = answers(core.makeHost(candidate), candidate.name);
    // This checkout's reset command (or none) applies at its checkin.
    const claimed = await claim(core, candidate.id, matches, { reset: mark.reset }).catch(async (error: unknown) => {
      await probe.catch(() => undefined);
      throw error;
    });
    if (!claimed) {
      probe.catch(() => undefined); // another process took it: its answer no longer matters
      continue;
    }
    const host = core.makeHost(claimed, req.hostClass);
    core.held.set(host.id, host);
    const started = Date.now();
    try {
      await probe;
      if (req.waitFor?.length)
        await waitUntilReady(host, req.waitFor, { timeout: Math.max(1, timeoutMs - (Date.now() - started)), ...(req.signal ? { signal: req.signal } : {}) });
      await host.setup();
    } catch (error) {
      core.logger.warn(`pooled host ${claimed.name} is not usable (${asError(error).message}); releasing it`, { id: claimed.id });
      await releaseHostRecord(core, claimed).catch((e: unknown) => core.logger.error(`could not release ${claimed.name}`, { error: asError(e).message }));
      continue;
    }
    core.logger.info(`reusing pooled host ${claimed.name}`, { id: claimed.id });
    out.push(host);
  }
  return out;
}

/**
 * What a Host's checkin asks of the Broker: a host checked out with `reuse` goes back to the pool
 * (after its `reset` command; a failing reset releases it instead), any other is released. Then
 * pooled hosts idle too long are released.
 */
export async function releaseOrPool(core: BrokerCore, record: HostRecord): Promise<void | 'pooled'> {
  // The mark is written with the intent record and never added later: without one, no read.
  const current = markOf(record) ? await core.store.get(record.id) : undefined;
  const mark = current ? markOf(current) : undefined;
  let pooled = false;
  if (!current || !mark || current.kept || current.state !== 'ready') {
    await releaseHostRecord(core, record);
  } else {
    pooled = await toPool(core, current, mark);
    if (!pooled) await releaseHostRecord(core, current);
  }
  await expireIdleLogged(core);
  return pooled ? 'pooled' : undefined;
}

async function toPool(core: BrokerCore, record: HostRecord, mark: ReuseMark): Promise<boolean> {
  if (mark.reset) {
    try {
      await sessionFor(core, record).run(mark.reset, { timeout: 120_000, check: true });
    } catch (error) {
      core.logger.warn(`reset of ${record.name} failed (${asError(error).message}); releasing it instead of returning it to the pool`, { id: record.id });
      return false;
    }
  }
  const next = await core.store.patch(record.id, { pooled: { at: new Date().toISOString(), recipe: mark.recipe } }, { state: 'ready' });
  if (!next) return false;
  core.held.delete(record.id);
  core.logger.info(`returned ${record.name} to the warm-reuse pool`, { id: record.id });
  return true;
}

/** {@link expireIdle} after a checkin or before a reap: a failure is only logged. */
export function expireIdleLogged(core: BrokerCore, look = false): Promise<HostRecord[]> {
  return expireIdle(core, Date.now(), undefined, look).catch((error: unknown) => {
    core.logger.warn('could not release idle pooled hosts', { error: asError(error).message });
    return [];
  });
}

/** Expiry under way per Broker: a checkin of many hosts at once reads the inventory once for it. */
const expiring = new WeakMap<BrokerCore, Promise<HostRecord[]>>();
/**
 * Per Broker, when the next expiry can find something: no pooled host is idle too long before
 * the earliest `pooled.at + reuseIdle` of those it saw, nor before `reuseIdle` after the look
 * (a host pooled later is idle too long later still). Until then a checkin reads nothing for it.
 */
const nextDue = new WeakMap<BrokerCore, number>();

/**
 * Releases this owner's pooled hosts idle longer than `checkout.reuseIdle`; the records released.
 * `look`: read the inventory even when no host can be due yet (reap: another Broker may have a shorter `reuseIdle`).
 */
export function expireIdle(core: BrokerCore, now = Date.now(), records?: readonly HostRecord[], look = false): Promise<HostRecord[]> {
  const running = expiring.get(core);
  if (running) return running;
  if (!records && !look && now < (nextDue.get(core) ?? 0)) return Promise.resolve([]);
  const idleMs = toMs(core.settings.checkout.reuseIdle);
  const mine = (r: HostRecord): boolean => !!r.pooled && r.owner === core.owner;
  const idle = (r: HostRecord): boolean => mine(r) && now - Date.parse(r.pooled!.at) >= idleMs;
  const work = (async () => {
    const all = records ?? (await core.store.list());
    const waiting = all.filter((r) => mine(r) && !idle(r)).map((r) => Date.parse(r.pooled!.at) + idleMs);
    const released = await releasePooled(core, idle, all);
    // A pooled host that could not be released is looked at again at the next checkin.
    const failed = all.some((r) => idle(r) && !released.some((x) => x.id === r.id));
    nextDue.set(core, failed ? 0 : Math.min(now + idleMs, ...waiting));
    return released;
  })().finally(() => expiring.delete(core));
  expiring.set(core, work);
  return work;
}

/** Releases every pooled host of this owner (`checkin --pool`); the records released. */
export function emptyPool(core: BrokerCore): Promise<HostRecord[]> {
  return releasePooled(core, (r) => !!r.pooled && r.owner === core.owner);
}

async function releasePooled(core: BrokerCore, which: (r: HostRecord) => boolean, records?: readonly HostRecord[]): Promise<HostRecord[]> {
  const released: HostRecord[] = [];
  for (const record of (records ?? (await core.store.list())).filter(which)) {
    const claimed = await claim(core, record.id, which);
    if (!claimed) continue; // taken by a checkout meanwhile
    try {
      await releaseHostRecord(core, claimed);
      released.push(claimed);
    } catch (error) {
      core.logger.error(`could not release pooled host ${claimed.name}; it stays in the inventory`, { id: claimed.id, error: asError(error).message });
    }
  }
  return released;
}
