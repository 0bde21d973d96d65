/**
 * The dashboard's copy of the inventory, kept current by `broker.watch()`: requests read memory
 * (fast with 10,000 hosts) and every change is passed on to the event stream. A `reset` from the
 * store, or a store that cannot be watched (polled instead), re-reads everything.
 * @module
 */
import type { Broker } from '../broker/index.js';
import { asError } from '../errors.js';
import type { InventoryChange } from '../inventory/store.js';
import type { DeploymentRecord, HostRecord } from '../records.js';

/** How often a store without watch is re-read, in ms. */
const POLL_MS = 5_000;
/** Answers kept between changes (pages re-read after each change, mostly the same few views). */
const MEMO_ENTRIES = 32;

/** What listeners get: the changes of one batch (`reset`: re-read everything). */
export type LiveListener = (changes: InventoryChange[]) => void;

/** The inventory in memory, following the store. */
export class LiveInventory {
  readonly hosts = new Map<string, HostRecord>();
  readonly deployments = new Map<string, DeploymentRecord>();
  /** Raised by every batch of changes; clients compare it to know they are current. */
  version = 0;
  readonly #broker: Broker;
  readonly #listeners = new Set<LiveListener>();
  readonly #stop = new AbortController();
  #pending: InventoryChange[] = [];
  readonly #memo = new Map<string, unknown>();
  #poll: NodeJS.Timeout | undefined;

  private constructor(broker: Broker) {
    this.#broker = broker;
  }

  /** Starts following the broker's store (the watch starts before the first read, so nothing is missed). */
  static async open(broker: Broker): Promise<LiveInventory> {
    const live = new LiveInventory(broker);
    let changes: AsyncIterableIterator<InventoryChange> | undefined;
    try {
      changes = broker.watch({ signal: live.#stop.signal });
    } catch {
      // A store without watch: polled.
    }
    await live.#reload();
    if (changes) void live.#follow(changes);
    else live.#poll = setInterval(() => void live.#refresh(), POLL_MS).unref();
    return live;
  }

  /** Calls `listener` with each batch of changes until the returned function is called. */
  subscribe(listener: LiveListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * What `make` computes from the inventory as it is, computed once until the next change (or the
   * next version: answers that carry the version stay true).
   */
  memo<T>(key: string, make: () => T): T {
    if (this.#memo.has(key)) return this.#memo.get(key) as T;
    const value = make();
    if (this.#memo.size >= MEMO_ENTRIES) this.#memo.delete(this.#memo.keys().next().value!);
    this.#memo.set(key, value);
    return value;
  }

  /** Stops following the store. */
  close(): void {
    this.#stop.abort();
    if (this.#poll) clearInterval(this.#poll);
    this.#listeners.clear();
  }

  /**
   * Re-reads some records now, after this dashboard changed them, so the page's next read sees the
   * change (the watch reports it too, a moment later).
   */
  async refresh(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      const record = await this.#broker.find(id);
      const change: InventoryChange = { kind: 'host', id, record: record?.id === id ? record : undefined };
      this.#apply(change);
      this.#queue(change);
    }
  }

  async #follow(changes: AsyncIterableIterator<InventoryChange>): Promise<void> {
    try {
      for await (const change of changes) {
        if (change.kind === 'reset') await this.#reload();
        else this.#apply(change);
        this.#queue(change);
      }
    } catch (error) {
      this.#broker.logger.warn(`dashboard: the inventory watch stopped (${asError(error).message}); polling instead`);
      this.#poll = setInterval(() => void this.#refresh(), POLL_MS).unref();
    }
  }

  #apply(change: InventoryChange): void {
    this.#memo.clear();
    if (change.kind === 'host') {
      if (change.record) this.hosts.set(change.id, change.record);
      else this.hosts.delete(change.id);
    } else if (change.kind === 'deployment') {
      if (change.deployment) this.deployments.set(change.id, change.deployment);
      else this.deployments.delete(change.id);
    }
  }

  /** Changes close together go out as one batch. */
  #queue(change: InventoryChange): void {
    this.#pending.push(change);
    if (this.#pending.length > 1) return;
    setImmediate(() => {
      const batch = this.#pending;
      this.#pending = [];
      this.version++;
      this.#memo.clear();
      for (const listener of this.#listeners) listener(batch);
    });
  }

  async #reload(): Promise<void> {
    const [hosts, deployments] = await Promise.all([this.#broker.inventory(), this.#broker.deployments()]);
    this.#memo.clear();
    this.hosts.clear();
    for (const h of hosts) this.hosts.set(h.id, h);
    this.deployments.clear();
    for (const d of deployments) this.deployments.set(d.id, d);
  }

  /** Polling: re-read, and tell listeners only when something differs. */
  async #refresh(): Promise<void> {
    const before = JSON.stringify([[...this.hosts.values()], [...this.deployments.values()]]);
    await this.#reload().catch((error: unknown) => this.#broker.logger.warn(`dashboard: reading the inventory failed: ${asError(error).message}`));
    if (JSON.stringify([[...this.hosts.values()], [...this.deployments.values()]]) !== before) this.#queue({ kind: 'reset' });
  }
}
