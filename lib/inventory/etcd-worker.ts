/**
 * Worker liveness on the etcd store: a Broker that writes holds a lease (TTL `workerTtl`, kept
 * alive by the client) and a key `workers/<lease id>` attached to it. When the process dies or
 * stalls past the TTL, etcd deletes the key, and the records stamped with that worker are
 * orphans any worker may finish. A worker that lost its lease is fenced: each of its writes
 * compares that its key still exists, so a stalled worker that wakes up writes nothing.
 * @module
 */
import { hostname } from 'node:os';
import type { Etcd3 } from 'etcd3';
import { InventoryError } from '../errors.js';
import { type Keys, put } from './etcd-keys.js';

/** What a worker key says about its worker. */
export interface WorkerInfo {
  id: string;
  machine: string;
  pid: number;
  started: string;
}

/**
 * This process's worker on one store: granted on first write, renewed every third of its TTL
 * (each renewal a short keep-alive stream, and the timer unref'd, so an unclosed Broker does not
 * keep the process alive), revoked on close.
 */
export class Worker {
  #id: Promise<string> | undefined;
  #lost: Error | undefined;
  #timer: NodeJS.Timeout | undefined;
  #renewing = false;

  constructor(
    private readonly client: () => Promise<Etcd3>,
    private readonly keys: Keys,
    private readonly ttl: number,
    /** Runs a call through leader elections, failing as the store does when the cluster is gone. */
    private readonly guarded: <T>(what: string, work: () => Promise<T>) => Promise<T>,
  ) {}

  /** The lease id, granting the lease and writing the worker key the first time. */
  id(): Promise<string> {
    if (this.#lost) return Promise.reject(this.fenced());
    if (!this.#id) {
      const granting = this.grant();
      granting.catch(() => {
        if (this.#id === granting) this.#id = undefined;
      });
      this.#id = granting;
    }
    return this.#id;
  }

  /** The lease id when one was granted and is not lost (no call to etcd). */
  async current(): Promise<string | undefined> {
    if (this.#lost || !this.#id) return undefined;
    return this.#id.catch(() => undefined);
  }

  /** Marks the worker lost when etcd refused a write because its key is gone. */
  lose(): InventoryError {
    this.#lost ??= new Error('worker key gone');
    clearInterval(this.#timer);
    return this.fenced();
  }

  /** The error every write of a fenced worker fails with. */
  fenced(): InventoryError {
    return new InventoryError(
      `this Broker's worker liveness lease expired (the process was stopped, frozen or cut off from etcd for longer than inventory.workerTtl = ${this.ttl} s), so other workers may already have finished its hosts as orphans. ` +
        'Nothing was written, so no newer record was overwritten; close this Broker and open a new one.',
    );
  }

  private async grant(): Promise<string> {
    const client = await this.client();
    const { ID: id } = await this.guarded('grant this worker its liveness lease', () => client.leaseClient.leaseGrant({ TTL: this.ttl }));
    const info: WorkerInfo = { id, machine: hostname(), pid: process.pid, started: new Date().toISOString() };
    await this.guarded('register this worker', () => client.kv.txn({ success: [put(this.keys.worker(id), JSON.stringify(info), id)] }));
    this.#timer = setInterval(() => void this.renew(client, id), Math.max(300, (this.ttl * 1000) / 3));
    this.#timer.unref();
    return id;
  }

  /** One keep-alive; a failed one is tried again at the next tick (the lease outlives two misses). */
  private async renew(client: Etcd3, id: string): Promise<void> {
    if (this.#renewing || this.#lost) return;
    this.#renewing = true;
    let stream: Awaited<ReturnType<Etcd3['leaseClient']['leaseKeepAlive']>> | undefined;
    try {
      const open = await client.leaseClient.leaseKeepAlive();
      stream = open;
      const answer = await new Promise<{ TTL: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('keep-alive unanswered')), (this.ttl * 1000) / 3);
        open.on('data', (r) => {
          clearTimeout(timer);
          resolve(r);
        });
        open.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
        open.write({ ID: id });
      });
      if (Number(answer.TTL) <= 0) this.lose(); // expired meanwhile: every later write fails fenced
    } catch {
      // Unreachable now (a member down, an election): try again soon rather than a tick later.
      if (!this.#lost) setTimeout(() => void this.renew(client, id), 250).unref();
    } finally {
      stream?.cancel();
      this.#renewing = false;
    }
  }

  /** Revokes the lease (the worker key goes with it). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    const id = await this.current();
    if (!id) return;
    const client = await this.client().catch(() => undefined);
    await client?.leaseClient.leaseRevoke({ ID: id }).catch(() => undefined);
  }
}

/** Every live worker (ids of the worker keys that exist). */
export async function liveWorkers(client: Etcd3, keys: Keys): Promise<Map<string, WorkerInfo>> {
  const all = await client.getAll().prefix(keys.workers).strings();
  const out = new Map<string, WorkerInfo>();
  for (const [key, text] of Object.entries(all)) {
    const id = key.slice(keys.workers.length);
    try {
      out.set(id, { ...(JSON.parse(text) as WorkerInfo), id });
    } catch {
      out.set(id, { id, machine: '?', pid: 0, started: '' });
    }
  }
  return out;
}
