/**
 * Reconciling the inventory with what providers really hold: `sync` (the view follows the
 * providers) and `reap` (what killed processes left behind is released). The reap decision is
 * the Broker's, made from providers' `discover()` tags and leases, the same for every provider.
 * @module
 */
import { hostname as machineHostname } from 'node:os';
import { asError } from '../errors.js';
import { isProcessAlive } from '../identity.js';
import { keepPinnedKey } from '../known-hosts.js';
import { keepRoute } from '../ssh-defaults.js';
import type { HostRecord } from '../records.js';
import { redact } from '../secrets.js';
import { toMs, type Duration } from '../settings.js';
import type { BrokerCore } from './core.js';
import { releaseRecord } from './release.js';
import { recordOf } from './records.js';
import type { ProviderRuntime } from './runtime.js';
import { syncKnownHosts } from './sessions.js';
import { reapable, workerOrphans } from './reap-rule.js';
import type { SyncResult } from './types.js';

/** Providers (and instances) a sync or reap covers: the one named (`name` or `name::instance`), or every one in use. */
function scope(core: BrokerCore, provider: string | undefined): Array<{ runtime: ProviderRuntime; instances: string[] }> {
  if (provider) {
    const [name, instance] = provider.split('::');
    const runtime = core.runtime(name!);
    return [{ runtime, instances: instance ? [instance] : runtime.instances() }];
  }
  return core
    .providerNames()
    .map((n) => core.runtime(n))
    .filter((r) => r.inUse)
    .map((runtime) => ({ runtime, instances: runtime.instances() }));
}

/**
 * Rebuilds the inventory view from what providers report (by their tags): hosts created by
 * another process appear, hosts that are gone are removed. Records of checkouts or releases
 * under way (or cut off) keep their state: `releasing` tells checkin and reap to finish the job.
 */
export async function sync(core: BrokerCore, provider?: string): Promise<SyncResult> {
  const result: SyncResult = { added: [], updated: [], removed: [] };
  for (const { runtime, instances } of scope(core, provider)) {
    const impl = provider ? await runtime.require('discover') : await runtime.implementation();
    if (!impl.discover) continue;
    for (const instance of provider?.includes('::') ? instances : [undefined]) {
      const ctx = runtime.context(instance);
      const found = await runtime.call(() => impl.discover!(ctx));
      const all = await core.store.list();
      const seen = new Set<string>();
      for (const d of found) {
        const existing = all.find((h) => (d.id && h.id === d.id) || (d.providerId && h.provider === runtime.name && h.providerId === d.providerId));
        if (existing) {
          seen.add(existing.id);
          const next = await core.store.patch(existing.id, (current) => {
            const busy = current.state === 'provisioning' || current.state === 'releasing';
            return {
              hostname: d.hostname,
              connection: keepRoute(keepPinnedKey(d.connection, current.connection), current.connection),
              state: busy ? current.state : 'ready',
              ...(d.providerId ? { providerId: d.providerId } : {}),
              ...(d.ports ? { ports: d.ports } : {}),
              ...(d.data ? { data: redact(d.data, 'drop') } : {}),
            };
          });
          if (next) result.updated.push(next);
          continue;
        }
        const record = recordOf(core, d, runtime.name, ctx.instance);
        seen.add(record.id);
        await core.store.add([record]);
        result.added.push(record);
      }
      // Ready hosts of this provider instance that the provider no longer has are gone.
      const gone = all.filter((h) => h.provider === runtime.name && h.instance === ctx.instance && h.state === 'ready' && !seen.has(h.id));
      const removed = new Set(
        await core.store.remove(
          gone.map((h) => h.id),
          { state: 'ready' },
        ),
      );
      result.removed.push(...gone.filter((h) => removed.has(h.id)));
    }
  }
  await syncKnownHosts(core);
  return result;
}

/**
 * Removes what killed processes left behind: records stuck in `provisioning`/`releasing` whose
 * process on this machine is gone (released through their provider), and provider resources
 * that the reap rule finds orphaned or expired.
 */
export async function reap(core: BrokerCore, provider?: string): Promise<{ released: HostRecord[]; removed: string[] }> {
  const released: HostRecord[] = [];
  const removed: string[] = [];
  const all = (await core.store.list()).filter((h) => !provider || h.provider === provider.split('::')[0]);
  for (const record of await staleRecords(core, all)) {
    try {
      await releaseRecord(core, record);
      released.push(record);
    } catch (error) {
      core.logger.warn(`could not reap ${record.name}`, { error: asError(error).message });
    }
  }
  for (const { runtime, instances } of scope(core, provider)) {
    const impl = await runtime.implementation();
    for (const instance of instances) {
      const ctx = runtime.context(instance);
      const records = new Map((await core.store.list()).map((h) => [h.id, h]));
      // Asked again right before a release: a checkout that began since writes its record first.
      const isKnown = async (id: string): Promise<boolean> => records.has(id) || (await core.store.has(id));
      if (impl.discover) {
        const grace = (ctx.instanceSettings as { reapGrace?: Duration }).reapGrace;
        const found = await runtime.call(() => impl.discover!(ctx));
        for (const { host, reason } of reapable(found, {
          brokerId: core.brokerId,
          isKnown: (id) => records.has(id),
          now: Date.now(),
          graceMs: grace === undefined ? 0 : toMs(grace),
        })) {
          const label = host.name ?? host.hostname ?? host.providerId ?? host.id;
          try {
            const record = records.get(host.id) ?? (await core.store.get(host.id));
            if (record) {
              // A known host whose lease passed is checked in as usual; a known live one stays.
              if (reason !== 'expired') continue;
              await releaseRecord(core, record);
            } else {
              if (await isKnown(host.id)) continue;
              const orphan = { ...recordOf(core, host, runtime.name, ctx.instance), state: 'releasing' as const };
              await runtime.call(() => impl.release(orphan, runtime.hostContext(orphan)));
            }
            removed.push(label);
          } catch (error) {
            core.logger.warn(`could not reap ${label} (${runtime.name})`, { error: asError(error).message });
          }
        }
      }
      if (impl.reap) removed.push(...(await runtime.call(() => impl.reap!(ctx, isKnown))));
    }
  }
  return { released, removed };
}

/**
 * Records of a shared store whose worker is gone (any machine's), in any state: what a dead or
 * stalled worker held. None on a store without worker liveness.
 */
export async function orphansOf(core: BrokerCore, records?: readonly HostRecord[]): Promise<HostRecord[]> {
  if (!core.store.workers) return [];
  // Records first, workers after: a record's worker key is written before the record, so a
  // worker missing from the later read is gone, not new.
  const all = records ?? (await core.store.list());
  return workerOrphans(all, await core.store.workers());
}

/**
 * Records nobody will finish, what `reap` releases and `checkin --orphans` picks: on a shared
 * store, those whose worker is gone (any machine's); on any store, unfinished checkouts and
 * releases of processes that died on this machine. Kept hosts stay.
 */
export async function staleRecords(core: BrokerCore, records: readonly HostRecord[]): Promise<HostRecord[]> {
  const here = machineHostname();
  const byWorker = new Set((await orphansOf(core, records)).map((r) => r.id));
  return records.filter((r) => byWorker.has(r.id) || (r.kept === undefined && unfinishedByDeadProcess(r, here)));
}

/**
 * A checkout or release cut off by the death of its process on this machine (records of a
 * shared store's workers are judged by their worker's liveness instead).
 */
export function unfinishedByDeadProcess(h: HostRecord, here = machineHostname()): boolean {
  return h.state !== 'ready' && h.machine === here && h.pid !== undefined && h.pid !== process.pid && h.worker === undefined && !isProcessAlive(h.pid);
}
