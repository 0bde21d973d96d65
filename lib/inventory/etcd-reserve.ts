/**
 * Reservations on the etcd store: a claim is the key `reservations/<pool>/<resource>` holding the
 * record id, created with `Create == 0` in the same transaction that puts the claim on the
 * record (compared on its mod revision) and drops the record's old claim. Exactly one of any
 * number of workers racing for a resource wins; a loser re-reads and tries the next one.
 * @module
 */
import type { IKeyValue } from 'etcd3';
import { InventoryError } from '../errors.js';
import { absent, del, envelope, get, getPrefix, holds, type Keys, kvs, newOp, put, type TxnRunner, unchanged, unwrap } from './etcd-keys.js';
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
  const op = newOp();
  for (let attempt = 1; ; attempt++) {
    const [found, claims] = await store.read(`reserve for ${recordId}`, [get(key), getPrefix(keys.reservations(pool))]);
    const kv = kvs(found)[0];
    if (!kv) throw new InventoryError(`the record ${recordId} is not in the inventory (it was checked in meanwhile); nothing was reserved.`);
    const stored = unwrap(kv);
    const current = validateRecord(stored.value);
    if (stored.op === op) return current.reserved?.resource; // applied, though its answer was cut off
    const held = new Map(claimsOf(keys, kvs(claims)).map((c) => [c.resource, c.recordId]));
    const free = candidates.find((c) => (held.get(c) ?? recordId) === recordId);
    if (free === undefined) return undefined;
    if (current.reserved?.pool === pool && current.reserved.resource === free && held.get(free) === recordId) return free;
    const claim = keys.reservation(pool, free);
    const old = current.reserved && keys.reservation(current.reserved.pool, current.reserved.resource);
    const next = validateRecord({ ...current, reserved: { pool, resource: free } });
    const result = await store.txn(
      `reserve ${free} of ${pool} for ${recordId}`,
      [unchanged(key, kv.mod_revision), held.get(free) === recordId ? holds(claim, recordId) : absent(claim)],
      [put(key, envelope(op, next)), ...(old && old !== claim ? [del(old)] : []), put(claim, recordId)],
    );
    if (result.succeeded) return free;
    await store.conflict(attempt, `reserve a resource of ${pool} for ${recordId}`);
  }
}
