/**
 * TEMPORARY (providers branch): what the current Broker needs to serve provider contract v2 over
 * the current `Inventory` — host contexts with checkpoint/reserve, pool holders, dangling hosts
 * recorded as kept, and reaping by the Broker's rule. The lead ports this behaviour into
 * lib/broker/ (and the claims into the InventoryStore); the code is not meant to stay.
 * @module
 */
import { InventoryError, ProviderError, asError } from '../errors.js';
import { newRecordId } from '../identity.js';
import type { Inventory } from '../inventory.js';
import type { Logger } from '../logger.js';
import type { DiscoveredHost, HostContext, ProviderContext, ProviderImplementation } from '../provider.js';
import type { HostRecord } from '../records.js';
import { redact, scrub } from '../secrets.js';
import { toMs } from '../settings.js';
import { reapable } from './reap-rule.js';

/** Claims live on the record (`data[CLAIM]`) until the store keeps them. */
const CLAIM = 'hostbroker.reservation';

/** One pool per provider: a machine listed by two instances is one machine. */
function poolOf(provider: string): string {
  return provider;
}

function claimOf(record: HostRecord, pool: string): string | undefined {
  const c = record.data[CLAIM] as { pool?: unknown; resource?: unknown } | undefined;
  return c?.pool === pool && typeof c.resource === 'string' ? c.resource : undefined;
}

function claims(records: readonly HostRecord[], pool: string): Map<string, HostRecord> {
  const out = new Map<string, HostRecord>();
  for (const r of records) {
    const resource = claimOf(r, pool);
    if (resource) out.set(resource, structuredClone(r));
  }
  return out;
}

/** `ctx.holders` of a provider: who holds which resource of its pool. */
export function holdersOf(inventory: Inventory, provider: string): () => Promise<Map<string, HostRecord>> {
  return async () => claims(await inventory.hosts(), poolOf(provider));
}

/** The context of a call about one host: checkpoint and reserve act on its record. */
export function hostContext(inventory: Inventory, base: ProviderContext, recordId: string, signal?: AbortSignal): HostContext {
  return {
    ...base,
    ...(signal ? { signal } : {}),
    checkpoint: (data) =>
      inventory.update((file) => {
        const r = file.hosts.find((h) => h.id === recordId);
        if (!r) throw new InventoryError(`the record ${recordId} is no longer in the inventory ${inventory.path} (it was checked in meanwhile).`);
        r.data = { ...r.data, ...redact(data, 'drop') };
        return structuredClone(r);
      }),
    reserve: (candidates) =>
      inventory.update((file) => {
        const mine = file.hosts.find((h) => h.id === recordId);
        if (!mine) throw new InventoryError(`the record ${recordId} was checked in while a resource was being chosen for it; nothing was reserved.`);
        const pool = poolOf(base.provider);
        const own = claimOf(mine, pool);
        if (own && candidates.includes(own)) return own;
        const held = claims(file.hosts, pool);
        const free = candidates.find((c) => !held.has(c));
        if (free) mine.data = { ...mine.data, [CLAIM]: { pool, resource: free } };
        return free;
      }),
  };
}

/** Hosts a failed checkout left behind (ProviderError.dangling), recorded as kept. */
export async function recordDangling(inventory: Inventory, record: HostRecord, error: unknown, logger: Logger): Promise<void> {
  if (!(error instanceof ProviderError) || !error.dangling.length) return;
  const at = new Date().toISOString();
  const { connection: _c, pid: _p, machine: _m, lastError: _l, ...rest } = record;
  const kept = error.dangling.map(
    (d): HostRecord => ({
      ...rest,
      id: newRecordId(),
      name: d.name,
      hostname: d.hostname ?? d.name,
      state: 'ready',
      providerId: d.providerId ?? d.name,
      createdAt: at,
      data: redact({ ...d.data, deployFailed: true }, 'drop'),
      kept: { reason: scrub(error.message).slice(0, 500), at },
    }),
  );
  await inventory
    .update((file) => {
      file.hosts.push(...kept);
    })
    .catch((e: unknown) => logger.error(`could not record the host(s) a failed checkout left behind: ${kept.map((k) => k.name).join(', ')}`, { error: asError(e).message }));
}

/** What {@link reapResources} needs of the Broker. */
export interface ReapDeps {
  inventory: Inventory;
  brokerId: string;
  logger: Logger;
  /** Checks a known record in (a host whose lease passed). */
  releaseRecord(record: HostRecord): Promise<void>;
  /** The Broker's wrapping of a provider's error. */
  wrap(provider: string, error: unknown): Error;
}

/**
 * Releases what `inventory()` reports and the reap rule picks (an unknown record, or a passed
 * lease), then runs the provider's own `reap` for what inventory() cannot see. Returns names.
 */
export async function reapResources(impl: ProviderImplementation, ctx: ProviderContext, deps: ReapDeps): Promise<string[]> {
  const removed: string[] = [];
  const records = new Map((await deps.inventory.hosts()).map((h) => [h.id, h]));
  // Asked again right before a release: a checkout that began since writes its record first.
  const isKnown = (id: string): boolean => records.has(id) || deps.inventory.hasSync(id);
  if (impl.inventory) {
    let found: DiscoveredHost[];
    try {
      found = await impl.inventory(ctx);
    } catch (error) {
      throw deps.wrap(ctx.provider, error);
    }
    // A provider may declare a `reapGrace` instance setting (container does).
    const grace = ctx.instanceSettings.reapGrace;
    const graceMs = typeof grace === 'number' || typeof grace === 'string' ? toMs(grace) : 0;
    for (const { host, reason } of reapable(found, { brokerId: deps.brokerId, isKnown: (id) => records.has(id), now: Date.now(), graceMs })) {
      const label = host.name ?? host.hostname ?? host.providerId ?? host.id;
      try {
        const record = records.get(host.id) ?? (await deps.inventory.get(host.id));
        if (record) {
          if (reason !== 'expired') continue;
          await deps.releaseRecord(record);
        } else {
          if (isKnown(host.id)) continue;
          await impl.release(recordOf(host, ctx), hostContext(deps.inventory, ctx, host.id));
        }
        removed.push(label);
      } catch (error) {
        deps.logger.warn(`could not reap ${label}`, { error: asError(error).message });
      }
    }
  }
  if (impl.reap) removed.push(...(await impl.reap(ctx, async (id) => isKnown(id))));
  return removed;
}

/** A record for a resource that has none (being reaped), from what inventory() reported. */
function recordOf(host: DiscoveredHost & { id: string }, ctx: ProviderContext): HostRecord {
  const record: HostRecord = {
    id: host.id,
    name: host.name ?? host.hostname,
    hostname: host.hostname,
    provider: ctx.provider,
    instance: ctx.instance,
    state: 'releasing',
    recipe: host.recipe ?? { provider: ctx.provider, instance: ctx.instance, args: {} },
    owner: host.owner ?? ctx.owner,
    brokerId: host.brokerId ?? ctx.brokerId,
    createdAt: host.createdAt ?? new Date().toISOString(),
    connection: host.connection,
    data: host.data ?? {},
  };
  if (host.providerId) record.providerId = host.providerId;
  if (host.leaseExpires) record.leaseExpires = host.leaseExpires;
  return record;
}
