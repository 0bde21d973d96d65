/**
 * The etcd store: the inventory of a team, shared by every worker on every machine (docs/team.md).
 * One key per record and per deployment, each change a compare-and-swap transaction on the key's
 * mod revision (a patch function is applied again to the newer record on conflict), every write
 * also comparing that this worker's liveness key still exists, so a worker that stalled past its
 * lease writes nothing. The client connects on first use: BrokerCore makes stores synchronously.
 * @module
 */
import type { Etcd3, ICompare, IRequestOp, IResponseOp } from 'etcd3';
import { InventoryError } from '../errors.js';
import type { DeploymentRecord, HostRecord } from '../records.js';
import type { InventorySettings } from '../settings.js';
import { connect, withCluster } from './etcd-client.js';
import { RecordCache } from './etcd-cache.js';
import { patchIn, readOne, removeIn } from './etcd-change.js';
import { absent, del, envelope, get, getPrefix, Keys, kvs, newOp, present, put, type TxnResult, type TxnRunner, unchanged, unwrap } from './etcd-keys.js';
import { claimsOf, reserveIn } from './etcd-reserve.js';
import { watchStore } from './etcd-watch.js';
import { liveWorkers, Worker, type WorkerInfo } from './etcd-worker.js';
import { validateDeployment, validateRecord } from './operations.js';
import type { InventoryChange, InventorySnapshot, InventoryStore, RecordPatch, Reservation, WriteCondition } from './store.js';

/** How often a compare-and-swap that lost to another writer is tried again. */
const ATTEMPTS = 200;

/** An inventory in etcd, under `settings.prefix`. Safe from many processes on many machines. */
export class EtcdInventoryStore implements InventoryStore, TxnRunner {
  readonly kind = 'etcd';
  readonly keys: Keys;
  readonly settings: InventorySettings;
  readonly worker: Worker;
  readonly cache = new RecordCache();
  #client: Promise<Etcd3> | undefined;
  #revision: string | undefined;
  #closed = false;
  readonly #watchers = new Set<() => void>();

  constructor(settings: InventorySettings) {
    this.settings = settings;
    this.keys = new Keys(settings.prefix);
    this.worker = new Worker(
      () => this.client(),
      this.keys,
      settings.workerTtl,
      (what, work) => withCluster(settings, what, work),
    );
  }

  get location(): string {
    return `etcd ${this.settings.endpoints.join(',')} prefix ${this.settings.prefix}`;
  }

  /** The client, connected on first use. */
  client(): Promise<Etcd3> {
    if (this.#closed) return Promise.reject(new InventoryError(`the etcd inventory store (${this.location}) was closed; open a new Broker.`));
    if (!this.#client) {
      const connecting = connect(this.settings);
      connecting.catch(() => {
        if (this.#client === connecting) this.#client = undefined;
      });
      this.#client = connecting;
    }
    return this.#client;
  }

  async list(): Promise<HostRecord[]> {
    const [hosts] = await this.read('list the inventory', [getPrefix(this.keys.hosts)]);
    return kvs(hosts).map((kv) => validateRecord(unwrap(kv).value));
  }

  async get(id: string): Promise<HostRecord | undefined> {
    return (await readOne(this, id))?.record;
  }

  async snapshot(): Promise<InventorySnapshot> {
    const [hosts, deployments] = await this.read('read the inventory', [getPrefix(this.keys.hosts), getPrefix(this.keys.deployments)]);
    return {
      hosts: kvs(hosts).map((kv) => validateRecord(unwrap(kv).value)),
      deployments: kvs(deployments).map((kv) => validateDeployment(unwrap(kv).value)),
    };
  }

  /** An unreachable cluster answers true: reaping then removes nothing. */
  async has(id: string): Promise<boolean> {
    try {
      return kvs((await this.read(`read ${id}`, [get(this.keys.host(id))]))[0]).length > 0;
    } catch {
      return true;
    }
  }

  async add(records: readonly HostRecord[]): Promise<void> {
    const valid = records.map(validateRecord);
    const ids = new Set<string>();
    for (const r of valid) {
      if (ids.has(r.id)) throw new InventoryError(`a record with id ${r.id} is already in the inventory; nothing was added.`);
      ids.add(r.id);
    }
    if (!valid.length) return;
    // This process's own checkouts carry its worker, so they are orphans once it is gone.
    if (valid.some((r) => r.pid === process.pid && r.worker === undefined)) {
      const worker = await this.worker.id();
      for (const r of valid) if (r.pid === process.pid && r.worker === undefined) r.worker = worker;
    }
    const op = newOp();
    const claims = valid.flatMap((r) =>
      r.reserved ? [{ record: r.id, key: this.keys.reservation(r.reserved.pool, r.reserved.resource), ...r.reserved }] : [],
    );
    const claimed = new Map<string, string>();
    for (const c of claims) {
      const other = claimed.get(c.key);
      if (other) throw new InventoryError(`refusing to give ${c.resource} of pool ${c.pool} to ${c.record}: ${other} holds it; nothing was changed.`);
      claimed.set(c.key, c.record);
    }
    const result = await this.txn(
      `add ${valid.length} record(s)`,
      [...valid.map((r) => absent(this.keys.host(r.id))), ...claims.map((c) => absent(c.key))],
      [...valid.map((r) => put(this.keys.host(r.id), envelope(op, r))), ...claims.map((c) => put(c.key, c.record))],
      [...valid.map((r) => get(this.keys.host(r.id))), ...claims.map((c) => get(c.key))],
    );
    if (result.succeeded) {
      for (const r of valid) this.cache.set(r.id, { mod: result.revision, op, record: r });
      return;
    }
    const found = result.responses.map((r) => kvs(r)[0]);
    const hosts = found.slice(0, valid.length);
    // A retried add whose first answer was cut off finds its own records.
    if (hosts.every((kv) => kv && unwrap(kv).op === op)) return;
    const taken = valid.find((_, i) => hosts[i] !== undefined);
    if (taken) throw new InventoryError(`a record with id ${taken.id} is already in the inventory; nothing was added.`);
    const held = claims.findIndex((_, i) => found[valid.length + i] !== undefined);
    const c = claims[held]!;
    throw new InventoryError(
      `refusing to give ${c.resource} of pool ${c.pool} to ${c.record}: ${found[valid.length + held]!.value.toString()} holds it; nothing was changed.`,
    );
  }

  patch(id: string, change: RecordPatch, when?: WriteCondition): Promise<HostRecord | undefined> {
    return patchIn(this, id, change, when);
  }

  remove(ids: readonly string[], when?: WriteCondition): Promise<string[]> {
    return removeIn(this, ids, when);
  }

  reserve(recordId: string, pool: string, candidates: readonly string[]): Promise<string | undefined> {
    return reserveIn(this, recordId, pool, candidates);
  }

  async reservations(pool?: string): Promise<Reservation[]> {
    const [claims] = await this.read('read the reservations', [getPrefix(this.keys.reservations(pool))]);
    return claimsOf(this.keys, kvs(claims));
  }

  async putDeployment(deployment: DeploymentRecord): Promise<void> {
    const valid = validateDeployment(deployment);
    await this.txn(`record deployment ${valid.id}`, [], [put(this.keys.deployment(valid.id), envelope(newOp(), valid))]);
  }

  async removeDeployment(id: string): Promise<boolean> {
    const key = this.keys.deployment(id);
    const [found] = await this.read(`read deployment ${id}`, [get(key)]);
    const kv = kvs(found)[0];
    if (!kv) return false;
    return (await this.txn(`remove deployment ${id}`, [unchanged(key, kv.mod_revision)], [del(key)])).succeeded;
  }

  watch(onChange: (change: InventoryChange) => void): () => void {
    const stop = watchStore(
      () => this.client(),
      this.keys,
      () => this.#revision,
      onChange,
    );
    const done = (): void => {
      this.#watchers.delete(done);
      stop();
    };
    this.#watchers.add(done);
    return done;
  }

  /** Every live worker of the team, by lease id. */
  async workers(): Promise<Map<string, WorkerInfo>> {
    const client = await this.client();
    return withCluster(this.settings, 'list the live workers', () => liveWorkers(client, this.keys));
  }

  /**
   * Stops watches, hands the hosts this worker still holds over to nobody (they stay checked
   * out, as after a file-store close, instead of turning into orphans), revokes the lease.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    for (const stop of [...this.#watchers]) stop();
    const worker = await this.worker.current();
    if (worker) {
      const mine = await this.list().catch(() => [] as HostRecord[]);
      for (const r of mine.filter((h) => h.worker === worker)) await this.patch(r.id, { worker: undefined }).catch(() => undefined);
      await this.worker.close();
    }
    this.#closed = true;
    const client = await this.#client?.catch(() => undefined);
    client?.close();
  }

  // ---------------------------------------------------------------- transactions

  /** Reads several ranges at one revision. */
  async read(what: string, ops: IRequestOp[]): Promise<IResponseOp[]> {
    const client = await this.client();
    const response = await withCluster(this.settings, what, () => client.kv.txn({ success: ops }));
    this.#seen(response.header.revision);
    return response.responses;
  }

  /** One guarded write: `compares` and this worker's key still existing. */
  async txn(what: string, compares: ICompare[], success: IRequestOp[], failure: IRequestOp[] = []): Promise<TxnResult> {
    const client = await this.client();
    const worker = this.keys.worker(await this.worker.id());
    const response = await withCluster(this.settings, what, () =>
      client.kv.txn({ compare: [present(worker), ...compares], success, failure: [get(worker), ...failure] }),
    );
    this.#seen(response.header.revision);
    const revision = response.header.revision;
    if (response.succeeded) return { succeeded: true, responses: response.responses, revision };
    if (!kvs(response.responses[0]).length) throw this.worker.lose();
    return { succeeded: false, responses: response.responses.slice(1), revision };
  }

  /**
   * After a lost compare-and-swap: gives up after many, else waits a little (jittered) when
   * `wait`, i.e. when another writer changed the same key (not when the answer was already fresh).
   */
  async conflict(attempt: number, what: string, wait = true): Promise<void> {
    if (attempt >= ATTEMPTS) {
      throw new InventoryError(
        `could not ${what}: other workers changed it ${ATTEMPTS} times in a row while this one tried; nothing was written. Run the operation again.`,
      );
    }
    if (wait) await new Promise((r) => setTimeout(r, Math.random() * Math.min(2 * attempt, 50)));
  }

  #seen(revision: string): void {
    if (this.#revision === undefined || BigInt(revision) > BigInt(this.#revision)) this.#revision = revision;
  }
}
