/**
 * The key layout of the etcd store and the pieces of its transactions. One key per record and
 * per deployment (a whole-document key collapses under contention), one per reservation (so a
 * claim is a `Create == 0` compare) and one per live worker (attached to its lease):
 *
 *     <prefix>hosts/<id>                     {"op": "...", "value": HostRecord}
 *     <prefix>deployments/<id>               {"op": "...", "value": DeploymentRecord}
 *     <prefix>reservations/<pool>/<resource> record id
 *     <prefix>workers/<lease id>             {"machine", "pid", "started"}
 *
 * Values carry the id of the operation that wrote them, so a write whose answer was cut off (a
 * leader change) can tell on retry whether it was applied, instead of applying a patch twice.
 * @module
 */
import { randomUUID } from 'node:crypto';
import type { ICompare, IKeyValue, IRequestOp, IResponseOp } from 'etcd3';
import { InventoryError } from '../errors.js';
import type { HostRecord } from '../records.js';
import { validateRecord } from './operations.js';

/** Key names under a prefix. Pools and resources are URI-encoded: `/` may occur in them. */
export class Keys {
  constructor(readonly prefix: string) {}
  get hosts(): string {
    return `${this.prefix}hosts/`;
  }
  get deployments(): string {
    return `${this.prefix}deployments/`;
  }
  get workers(): string {
    return `${this.prefix}workers/`;
  }
  reservations(pool?: string): string {
    return `${this.prefix}reservations/${pool === undefined ? '' : `${encodeURIComponent(pool)}/`}`;
  }
  host(id: string): string {
    return this.hosts + id;
  }
  deployment(id: string): string {
    return this.deployments + id;
  }
  worker(id: string): string {
    return this.workers + id;
  }
  reservation(pool: string, resource: string): string {
    return this.reservations(pool) + encodeURIComponent(resource);
  }
  /** The pool and resource of a reservation key. */
  claimOf(key: string): { pool: string; resource: string } {
    const [pool = '', resource = ''] = key.slice(this.reservations().length).split('/');
    return { pool: decodeURIComponent(pool), resource: decodeURIComponent(resource) };
  }
}

/** A new operation id for {@link envelope}. */
export const newOp = (): string => randomUUID();

/** The stored form of a record. */
export function envelope(op: string, value: unknown): Buffer {
  return Buffer.from(JSON.stringify({ op, value }));
}

/** The value and writing operation of a stored key; an InventoryError naming the key when it is not ours. */
export function unwrap(kv: IKeyValue): { op: string; value: unknown } {
  try {
    const parsed = JSON.parse(kv.value.toString()) as { op?: unknown; value?: unknown };
    if (typeof parsed.op === 'string' && parsed.value !== undefined) return { op: parsed.op, value: parsed.value };
  } catch {
    // reported below
  }
  throw new InventoryError(
    `the etcd key ${kv.key.toString()} does not hold a hostbroker record (someone else wrote it); remove it or choose another inventory.prefix.`,
  );
}

/** A record as stored at one revision, and the operation that wrote it. */
export interface Stored {
  mod: string;
  op: string;
  record: HostRecord;
}

/** The stored record of a key-value. */
export function storedOf(kv: IKeyValue): Stored {
  const { op, value } = unwrap(kv);
  return { mod: kv.mod_revision, op, record: validateRecord(value) };
}

/** The stored record each single-key range answer found, if any. */
export function storedAll(responses: readonly IResponseOp[]): (Stored | undefined)[] {
  return responses.map((r) => {
    const kv = kvs(r)[0];
    return kv && storedOf(kv);
  });
}

/** The end of the range of every key that starts with `prefix`. */
export function rangeEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1]! += 1;
  return end;
}

export const get = (key: string): IRequestOp => ({ request_range: { key: Buffer.from(key) } });
export const getPrefix = (prefix: string): IRequestOp => ({ request_range: { key: Buffer.from(prefix), range_end: rangeEnd(prefix) } });
export const put = (key: string, value: Buffer | string, lease?: string): IRequestOp => ({
  request_put: { key: Buffer.from(key), value: Buffer.from(value), ...(lease ? { lease } : {}) },
});
export const del = (key: string): IRequestOp => ({ request_delete_range: { key: Buffer.from(key) } });

/** The key does not exist (never created, or deleted). */
export const absent = (key: string): ICompare => ({ key: Buffer.from(key), target: 'Create', result: 'Equal', create_revision: 0 });
/** The key exists. */
export const present = (key: string): ICompare => ({ key: Buffer.from(key), target: 'Create', result: 'Greater', create_revision: 0 });
/** The key is unchanged since revision `mod` (0: still absent). */
export const unchanged = (key: string, mod: string): ICompare => ({ key: Buffer.from(key), target: 'Mod', result: 'Equal', mod_revision: mod });
/** The key holds exactly `value`. */
export const holds = (key: string, value: string): ICompare => ({ key: Buffer.from(key), target: 'Value', result: 'Equal', value: Buffer.from(value) });

/** The answer of one transaction, without the worker guard's own read. */
export interface TxnResult {
  succeeded: boolean;
  responses: IResponseOp[];
  /** The store's revision after it: the mod revision of every key a successful one put. */
  revision: string;
}

/** What the reservation module needs of the store: guarded writes, consistent reads, backoff. */
export interface TxnRunner {
  readonly keys: Keys;
  /** What this instance last wrote or read of each record (etcd-cache.ts). */
  readonly cache: { get(id: string): Stored | undefined; set(id: string, stored: Stored | undefined): void };
  txn(what: string, compares: ICompare[], success: IRequestOp[], failure?: IRequestOp[]): Promise<TxnResult>;
  read(what: string, ops: IRequestOp[]): Promise<IResponseOp[]>;
  conflict(attempt: number, what: string, wait?: boolean): Promise<void>;
}

/** The key-values of a range answer. */
export function kvs(response: IResponseOp | undefined): IKeyValue[] {
  return response?.response_range?.kvs ?? [];
}
