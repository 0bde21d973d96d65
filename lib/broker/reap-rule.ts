/**
 * The reap rule: which of the resources a provider's `discover()` reports the Broker releases.
 * One pure function for every provider, so that no provider decides on its own what is orphaned.
 * @module
 */
import type { DiscoveredHost } from '../provider.js';
import type { HostRecord } from '../records.js';

/** Why a resource is reaped. */
export type ReapReason = 'orphaned' | 'expired';

/** A resource the rule picked, and why. */
export interface Reapable {
  host: DiscoveredHost & { id: string };
  reason: ReapReason;
}

/** What the rule is decided on. */
export interface ReapRuleInput {
  /** This Broker's id: resources tagged with another broker's are never counted. */
  brokerId: string;
  /** Whether a record id is in the inventory. */
  isKnown: (recordId: string) => boolean;
  /** The time to judge leases and ages by, in ms since the epoch. */
  now: number;
  /**
   * A resource of an unknown record younger than this is left alone: its record may be on its
   * way into a shared inventory. 0: none.
   */
  graceMs: number;
}

/**
 * The resources to release: tagged with this broker's id and a record id, and either their record
 * is unknown (and they are older than the grace, when their age is known) or their lease has
 * passed. Untagged resources (no record id, no broker id) are never counted: they may be anyone's.
 */
export function reapable(discovered: readonly DiscoveredHost[], input: ReapRuleInput): Reapable[] {
  const out: Reapable[] = [];
  for (const host of discovered) {
    if (!host.id || host.brokerId !== input.brokerId) continue;
    const tagged = host as DiscoveredHost & { id: string };
    if (passed(host.leaseExpires, input.now)) {
      out.push({ host: tagged, reason: 'expired' });
      continue;
    }
    if (input.isKnown(host.id)) continue;
    const created = host.createdAt ? Date.parse(host.createdAt) : Number.NaN;
    if (input.graceMs > 0 && Number.isFinite(created) && input.now - created < input.graceMs) continue;
    out.push({ host: tagged, reason: 'orphaned' });
  }
  return out;
}

function passed(leaseExpires: string | undefined, now: number): boolean {
  if (!leaseExpires) return false;
  const t = Date.parse(leaseExpires);
  return Number.isFinite(t) && t < now;
}

/**
 * Records whose worker is gone (on a shared store): their Broker died or stalled past its lease,
 * so any worker may finish them. Kept hosts stay for a person; unstamped records are no one's.
 */
export function workerOrphans(records: readonly HostRecord[], live: ReadonlySet<string> | ReadonlyMap<string, unknown>): HostRecord[] {
  return records.filter((r) => r.worker !== undefined && !live.has(r.worker) && r.kept === undefined);
}
