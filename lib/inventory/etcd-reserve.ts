/**
 * Reservations on the etcd store: a claim is the key `reservations/<pool>/<resource>` holding the
 * record id, created with `Create == 0` in the same transaction that puts the claim on the
 * record (compared on its mod revision) and drops the record's old claim. Exactly one of any
 * number of workers racing for a resource wins; a loser re-reads and tries another free one.
 * @module
 */
import type { IKeyValue } from 'etcd3';
import { InventoryError } from '../errors.js';
import { absent, del, envelope, get, getPrefix, holds, type Keys, kvs, newOp, put, storedOf, type TxnRunner, unchanged } from './etcd-keys.js';
import { validateRecord } from './operations.js';
import type { Reservation } from './store.js';

/** The claims these reservation keys stand for. */
export function claimsOf(keys: Keys, found: readonly IKeyValue[]): Reservation[] {
  return found.map((kv) => ({ ...keys.claimOf(kv.key.toString()), recordId: kv.value.toString() }));
}

/** Claims the first free candidate for `recordId` (see {@link InventoryStore.reserve}). */
export async function reserveIn(store: TxnRunner, recordId: string, pool: string, candidates: readonly string[]): Promise<string | undefined> {
  const { keys } = store;
  const key = keys.host(recordId);
  const claimsKey = keys.reservations(pool);
  const op = newOp();
  // The record's revision as this instance last saw it saves reading the record; the claims are
  // read fresh. A failed claim's answer carries both as they are now, for the next attempt.
  let cached = store.cache.get(recordId);
  let fresh: [IKeyValue | undefined, IKeyValue[]] | undefined;
  let lostRace = false;
  for (let attempt = 1; ; attempt++) {
    if (!fresh) {
      const [found, claims] = await store
        .read(`reserve for ${recordId}`, cached ? [getPrefix(claimsKey)] : [get(key), getPrefix(claimsKey)])
        .then((r) => (cached ? [undefined, r[0]] : r));
      fresh = [kvs(found)[0], kvs(claims)];
    }
    const [kv, claims] = fresh;
    fresh = undefined;
    const stored = cached ?? (kv && storedOf(kv));
    if (!stored) throw new InventoryError(`the record ${recordId} is not in the inventory (it was checked in meanwhile); nothing was reserved.`);
    const current = stored.record;
    if (stored.op === op) return current.reserved?.resource; // applied, though its answer was cut off
    const held = new Map(claimsOf(keys, claims).map((c) => [c.resource, c.recordId]));
    const open = candidates.filter((c) => (held.get(c) ?? recordId) === recordId);
    // After a lost race, a random free one: the workers that lost with this one would otherwise
    // all go for the same next candidate and collide again, one winner per round.
    const free = lostRace && open.length > 1 ? open[Math.floor(Math.random() * open.length)] : open[0];
    if (free === undefined) return undefined;
    if (held.get(free) === recordId && (cached || (current.reserved?.pool === pool && current.reserved.resource === free))) {
      if (!cached) return free;
      cached = undefined; // decided on what may be stale: read the record too
      continue;
    }
    const claim = keys.reservation(pool, free);
    const old = current.reserved && keys.reservation(current.reserved.pool, current.reserved.resource);
    const next = validateRecord({ ...current, reserved: { pool, resource: free } });
    const result = await store.txn(
      `reserve ${free} of ${pool} for ${recordId}`,
      [unchanged(key, stored.mod), held.get(free) === recordId ? holds(claim, recordId) : absent(claim)],
      [put(key, envelope(op, next)), ...(old && old !== claim ? [del(old)] : []), put(claim, recordId)],
      [get(key), getPrefix(claimsKey)],
    );
    if (result.succeeded) {
      store.cache.set(recordId, { mod: result.revision, op, record: next });
      return free;
    }
    fresh = [kvs(result.responses[0])[0], kvs(result.responses[1])];
    store.cache.set(recordId, fresh[0] && storedOf(fresh[0]));
    // Only another writer of this record is waited out: a stale cache, or a claim another worker
    // won, is answered already by what the failed transaction read (the claims as they are now).
    const contended = cached === undefined && fresh[0]?.mod_revision !== stored.mod;
    lostRace = !contended;
    cached = undefined;
    await store.conflict(attempt, `reserve a resource of ${pool} for ${recordId}`, contended);
  }
}
