/**
 * What one etcd store instance last wrote or read of each record: its mod revision and value. A
 * write then compares on that revision instead of reading the key first (one request, not two);
 * a stale entry only makes the compare fail, and the failed transaction's answer carries the
 * key's current value for the next attempt. Nothing that writes nothing (a `when` that does not
 * hold, a patch that changes nothing) is decided on a cached value: those read the key.
 * @module
 */
import type { Stored } from './etcd-keys.js';

/** Entries kept at most: a long-lived worker touches many records, but only its latest matter. */
const LIMIT = 1000;

export class RecordCache {
  readonly #entries = new Map<string, Stored>();

  /** A copy, so a caller changing the record changes nothing here. */
  get(id: string): Stored | undefined {
    const s = this.#entries.get(id);
    return s && { ...s, record: structuredClone(s.record) };
  }

  set(id: string, stored: Stored | undefined): void {
    this.#entries.delete(id);
    if (!stored) return;
    this.#entries.set(id, { ...stored, record: structuredClone(stored.record) });
    if (this.#entries.size > LIMIT) this.#entries.delete(this.#entries.keys().next().value!);
  }
}
