/**
 * The file store, the embedded default: one JSON file in the broker directory, changed only by
 * named operations, each one locked across processes (`file-lock.ts`) and written atomically
 * (`file-io.ts`), mode 0600, validated on read and before every write.
 *
 * Stale writers are fenced. Every write raises the file's `generation`, and right before its
 * rename a writer checks that the lock is still its own and that the file still holds exactly
 * what it read. A writer that was paused past the stale time (stopped, a frozen VM, a long GC)
 * and lost its lock to another process fails that check: it replaces nothing, then re-reads and
 * applies its operation again on the newer inventory (operations are pure functions of the
 * records, so this is safe), or fails with an InventoryError saying nothing was lost.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InventoryError } from '../errors.js';
import { type DeploymentRecord, type HostRecord, InventoryFile } from '../records.js';
import { formatIssues } from '../settings.js';
import { currentText, readInventory, replaceInventory } from './file-io.js';
import { FileLock } from './file-lock.js';
import { watchInventoryFile } from './file-watch.js';
import { addRecords, checkReservations, patchRecord, putDeploymentIn, removeDeploymentFrom, removeRecords, reservationsOf, reserveFor } from './operations.js';
import type { InventoryChange, InventorySnapshot, InventoryStore, RecordPatch, Reservation, WriteCondition } from './store.js';

/** File name of the inventory in the broker directory. */
export const INVENTORY_FILE = 'inventory.json';

/** Options for {@link FileInventoryStore}. */
export interface InventoryOptions {
  /** How long to wait for another process's lock before failing, in ms. */
  lockWaitMs?: number;
  /** A lock not refreshed for this long is considered stale (its process died or stalled). Minimum 2000. */
  staleMs?: number;
}

/** How often an operation fenced off by a newer write is applied again before giving up. */
const ATTEMPTS = 5;

/** The inventory of one broker directory. Safe to use from many processes at once. */
export class FileInventoryStore implements InventoryStore {
  readonly kind = 'file';
  readonly directory: string;
  readonly path: string;
  private readonly lock: FileLock;
  private readonly staleMs: number;
  /** Serializes this instance's writes before taking the file lock. */
  private chain: Promise<unknown> = Promise.resolve();
  private readonly watchers = new Set<() => void>();

  constructor(directory: string, options: InventoryOptions = {}) {
    this.directory = directory;
    this.path = join(directory, INVENTORY_FILE);
    this.staleMs = Math.max(options.staleMs ?? 15_000, 2000);
    this.lock = new FileLock(directory, join(directory, 'inventory.lock'), this.path, { lockWaitMs: options.lockWaitMs ?? 120_000, staleMs: this.staleMs });
  }

  get location(): string {
    return this.path;
  }

  async list(): Promise<HostRecord[]> {
    return (await readInventory(this.path)).data.hosts;
  }

  async get(id: string): Promise<HostRecord | undefined> {
    return (await this.list()).find((h) => h.id === id);
  }

  async snapshot(): Promise<InventorySnapshot> {
    const { hosts, deployments } = (await readInventory(this.path)).data;
    return { hosts, deployments };
  }

  /**
   * Reaping asks this before removing a resource, so a checkout that started after reaping began
   * is safe: its record is written before its resource exists. An unreadable file answers true.
   */
  async has(id: string): Promise<boolean> {
    try {
      return hasId(await readFile(this.path, 'utf8'), id);
    } catch (error) {
      return (error as NodeJS.ErrnoException).code !== 'ENOENT';
    }
  }

  async add(records: HostRecord | readonly HostRecord[]): Promise<void> {
    const list = Array.isArray(records) ? (records as readonly HostRecord[]) : [records as HostRecord];
    await this.transact((data) => addRecords(data, list));
  }

  patch(id: string, change: RecordPatch, when?: WriteCondition): Promise<HostRecord | undefined> {
    return this.transact((data) => patchRecord(data, id, change, when));
  }

  remove(ids: string | readonly string[], when?: WriteCondition): Promise<string[]> {
    const list = typeof ids === 'string' ? [ids] : ids;
    return this.transact((data) => removeRecords(data, list, when));
  }

  reserve(recordId: string, pool: string, candidates: readonly string[]): Promise<string | undefined> {
    return this.transact((data) => reserveFor(data, recordId, pool, candidates));
  }

  async reservations(pool?: string): Promise<Reservation[]> {
    return reservationsOf(await this.list(), pool);
  }

  async putDeployment(deployment: DeploymentRecord): Promise<void> {
    await this.transact((data) => putDeploymentIn(data, deployment));
  }

  removeDeployment(id: string): Promise<boolean> {
    return this.transact((data) => removeDeploymentFrom(data, id));
  }

  watch(onChange: (change: InventoryChange) => void): () => void {
    const stop = watchInventoryFile(this.path, onChange);
    const done = (): void => {
      this.watchers.delete(done);
      stop();
    };
    this.watchers.add(done);
    return done;
  }

  /** Stops this instance's watchers. The store stays usable: it holds nothing else between calls. */
  async close(): Promise<void> {
    for (const stop of [...this.watchers]) stop();
  }

  /**
   * Runs `change` on the whole inventory under the lock and writes the result. Only for callers
   * not yet moved to the named operations. `change` may have side effects, so it is never run
   * twice: when a newer write fences it off, it fails with an InventoryError instead.
   * @internal
   */
  update<T>(change: (data: InventoryFile) => T | Promise<T>): Promise<T> {
    return this.transact(change, 1);
  }

  /** Applies `apply` (re-appliable: a pure function of the data) under the lock, serialized in this instance. */
  private transact<T>(apply: (data: InventoryFile) => T | Promise<T>, attempts = ATTEMPTS): Promise<T> {
    const run = this.chain.then(() => this.attempt(apply, attempts));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async attempt<T>(apply: (data: InventoryFile) => T | Promise<T>, attempts: number): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.once(apply);
      if (outcome.done) return outcome.result;
      if (attempt >= attempts) {
        const tried = attempts > 1 ? `it was applied ${attempts} times and fenced off each time` : 'this change cannot be applied twice';
        throw new InventoryError(
          `the inventory ${this.path} was written by another process while this one held its lock (this process was paused past the ${this.staleMs / 1000} s stale time, e.g. stopped or frozen, and lost the lock), and ${tried}. ` +
            'Nothing was written over the newer inventory, so nothing was lost; run the operation again.',
        );
      }
    }
  }

  private async once<T>(apply: (data: InventoryFile) => T | Promise<T>): Promise<{ done: true; result: T } | { done: false }> {
    const held = await this.lock.acquire();
    try {
      const { data, text } = await readInventory(this.path);
      const generation = (data.generation ?? 0) + 1;
      const before = JSON.stringify([data.hosts, data.deployments]);
      const result = await apply(data);
      const valid = InventoryFile.safeParse({ version: 1, generation, hosts: data.hosts, deployments: data.deployments });
      if (!valid.success) throw new InventoryError(`refusing to write an invalid inventory (${formatIssues(valid.error)}); nothing was changed.`);
      if (JSON.stringify([valid.data.hosts, valid.data.deployments]) === before) return { done: true, result };
      checkReservations(valid.data.hosts);
      const next = `${JSON.stringify(valid.data, null, 2)}\n`;
      // The fence: our lock, and the very file we read. Checked last, right before the rename.
      const written = await replaceInventory(this.path, next, async () => (await held.intact()) && (await currentText(this.path)) === text);
      return written ? { done: true, result } : { done: false };
    } finally {
      await held.release();
    }
  }
}

/** The file store under the name it had before stores were a seam (exported by `hostbroker`). */
export { FileInventoryStore as Inventory };

/** Whether the inventory text has a host record with this id (without validating the rest). */
function hasId(text: string, id: string): boolean {
  const data = JSON.parse(text) as { hosts?: Array<{ id?: unknown }> };
  return (data.hosts ?? []).some((h) => h.id === id);
}
