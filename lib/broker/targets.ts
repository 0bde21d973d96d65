/**
 * Turning what a caller names (a Host, a group, records, ids or names, `{ all }`, `{ filter }`)
 * into inventory records, with the live Host object where this Broker holds one.
 * @module
 */
import { Host } from '../../hosts/host.js';
import { UserInputError } from '../errors.js';
import { applyFilter, type Filter } from '../filter.js';
import type { HostRecord } from '../records.js';
import type { BrokerCore } from './core.js';
import type { HostTarget } from './types.js';

/** One thing to act on: its record, and the live Host when there is one. */
export interface TargetItem {
  record: HostRecord;
  host?: Host;
}

/** The records (and live hosts) a target names. Unknown ids and names are a UserInputError. */
export async function resolveTarget(core: BrokerCore, target: HostTarget): Promise<TargetItem[]> {
  if (target instanceof Host) return [{ record: target.record, host: target }];
  if (isRecord(target)) return [{ record: target }];
  const all = await core.store.list();
  if (typeof target === 'string') return [{ record: lookup(core, all, target) }];
  if (typeof target === 'object' && target !== null && ('all' in target || 'filter' in target) && !isIterable(target)) {
    const t = target as { all?: boolean; filter?: Filter<HostRecord> };
    if ('all' in t && t.all !== true) throw new UserInputError('use { all: true } to act on every host.');
    return applyFilter(all, t.filter).map((record) => withHost(core, record));
  }
  if (isIterable(target)) {
    const out: TargetItem[] = [];
    for (const item of target) {
      if (item instanceof Host) out.push({ record: item.record, host: item });
      else if (typeof item === 'string') out.push({ record: lookup(core, all, item) });
      else if (isRecord(item)) out.push({ record: item });
      else throw new UserInputError(`cannot act on ${JSON.stringify(item)}: give Hosts, records, ids or names.`);
    }
    return out;
  }
  throw new UserInputError('give a Host, a HostGroup, an array, an id or name, { all: true } or { filter }.');
}

/** A record by id, name or hostname, in that order of preference. */
export function findIn(all: readonly HostRecord[], key: string): HostRecord | undefined {
  return all.find((h) => h.id === key) ?? all.find((h) => h.name === key) ?? all.find((h) => h.hostname === key);
}

function lookup(core: BrokerCore, all: readonly HostRecord[], key: string): HostRecord {
  const found = findIn(all, key);
  if (!found) throw new UserInputError(`no host \`${key}\` in the inventory ${core.store.location}; run \`hostbroker inventory\` to see what is there.`);
  return found;
}

function withHost(core: BrokerCore, record: HostRecord): TargetItem {
  const host = core.held.get(record.id);
  return host ? { record, host } : { record };
}

function isIterable(v: unknown): v is Iterable<Host | HostRecord | string> {
  return typeof v === 'object' && v !== null && Symbol.iterator in v;
}

function isRecord(v: unknown): v is HostRecord {
  return (
    typeof v === 'object' && v !== null && !(v instanceof Host) && typeof (v as HostRecord).id === 'string' && typeof (v as HostRecord).provider === 'string'
  );
}
