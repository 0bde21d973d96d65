/**
 * Changing and removing records on the etcd store: each a compare-and-swap transaction on the
 * records' mod revisions (a patch function is applied again to the newer record on conflict),
 * compared on the revision this instance last saw when it has one (etcd-cache.ts), so a change
 * is one request, not a read and a write.
 * @module
 */
import type { IRequestOp } from 'etcd3';
import { InventoryError } from '../errors.js';
import type { HostRecord } from '../records.js';
import { absent, del, envelope, get, kvs, newOp, put, type Stored, storedAll, storedOf, type TxnRunner, unchanged } from './etcd-keys.js';
import { meets, patched } from './operations.js';
import type { RecordPatch, WriteCondition } from './store.js';

/** One record as stored now (remembered for the next write); a copy the caller may change. */
export async function readOne(store: TxnRunner, id: string): Promise<Stored | undefined> {
  const kv = kvs((await store.read(`read ${id}`, [get(store.keys.host(id))]))[0])[0];
  const stored = kv && storedOf(kv);
  store.cache.set(id, stored);
  return stored && { ...stored, record: structuredClone(stored.record) };
}

/** Changes one record (see {@link InventoryStore.patch}). */
export async function patchIn(store: TxnRunner, id: string, change: RecordPatch, when?: WriteCondition): Promise<HostRecord | undefined> {
  const key = store.keys.host(id);
  const op = newOp();
  // The revision this instance last saw is compared on directly; a stale one costs a failed
  // compare whose answer is the current value (etcd-cache.ts).
  let stored = store.cache.get(id);
  let cached = stored !== undefined;
  for (let attempt = 1; ; attempt++) {
    if (!stored) {
      stored = await readOne(store, id);
      cached = false;
      if (!stored) return undefined;
    }
    const current = stored.record;
    if (stored.op === op) return current; // applied, though its answer was cut off
    let next: HostRecord | undefined;
    try {
      next = meets(current, when) ? patched(current, change) : undefined;
    } catch (error) {
      if (!cached) throw error; // refused on what may be stale: read it
      stored = undefined;
      continue;
    }
    if (next === undefined || JSON.stringify(next) === JSON.stringify(current)) {
      if (!cached) return meets(current, when) ? current : undefined;
      stored = undefined; // decided on what may be stale: read it
      continue;
    }
    const compares = [unchanged(key, stored.mod)];
    const success = [put(key, envelope(op, next))];
    const failure: IRequestOp[] = [get(key)];
    const before = current.reserved && store.keys.reservation(current.reserved.pool, current.reserved.resource);
    const after = next.reserved && store.keys.reservation(next.reserved.pool, next.reserved.resource);
    if (before !== after) {
      if (before) success.push(del(before));
      if (after) {
        compares.push(absent(after));
        success.push(put(after, id));
        failure.push(get(after));
      }
    }
    const result = await store.txn(`change ${id}`, compares, success, failure);
    if (result.succeeded) {
      store.cache.set(id, { mod: result.revision, op, record: next });
      return next;
    }
    const [found, claim] = result.responses.map((r) => kvs(r)[0]);
    const seen = stored.mod;
    stored = found && storedOf(found);
    store.cache.set(id, stored);
    if (!stored) return undefined;
    // The claim is what failed only when the record did not change meanwhile.
    if (after && before !== after && claim && claim.value.toString() !== id && stored.mod === seen) {
      throw new InventoryError(
        `refusing to give ${next.reserved!.resource} of pool ${next.reserved!.pool} to ${id}: ${claim.value.toString()} holds it; nothing was changed.`,
      );
    }
    await store.conflict(attempt, `change ${id}`, !cached);
    cached = false;
  }
}

/** Removes records (see {@link InventoryStore.remove}). */
export async function removeIn(store: TxnRunner, ids: readonly string[], when?: WriteCondition): Promise<string[]> {
  if (!ids.length) return [];
  const keys = ids.map((id) => store.keys.host(id));
  // Cached revisions only when they say every record goes: any other answer is read fresh.
  const known = ids.map((id) => store.cache.get(id));
  let found = known.every((s) => s && meets(s.record, when)) ? known : undefined;
  for (let attempt = 1; ; attempt++) {
    found ??= storedAll(await store.read('read records to remove', keys.map(get)));
    const gone = found.flatMap((s, i) => (s && meets(s.record, when) ? [{ ...s, key: keys[i]! }] : []));
    if (!gone.length) return [];
    const result = await store.txn(
      `remove ${gone.length} record(s)`,
      gone.map((g) => unchanged(g.key, g.mod)),
      gone.flatMap(({ record, key }) => [del(key), ...(record.reserved ? [del(store.keys.reservation(record.reserved.pool, record.reserved.resource))] : [])]),
      keys.map(get),
    );
    if (result.succeeded) {
      for (const g of gone) store.cache.set(g.record.id, undefined);
      return gone.map(({ record }) => record.id);
    }
    found = storedAll(result.responses);
    for (const [i, id] of ids.entries()) store.cache.set(id, found[i]);
    await store.conflict(attempt, 'remove records');
  }
}
