/**
 * The inventory store seam: what the Broker needs from wherever records live. Named operations
 * on single records (never a whole-document rewrite), so that a networked store can keep one key
 * per record and update it by compare-and-swap. The file store (`FileInventoryStore`) is the
 * embedded default; the shared `testInventoryStore` suite in `hostbroker/testing` defines "done"
 * for any other.
 *
 * Only the Broker writes a store. Providers see none of it: they return data, note progress on
 * their own record through `ctx.checkpoint`, and pick from pools through `ctx.reserve`.
 * @module
 */
import type { DeploymentRecord, HostRecord, HostState } from '../records.js';

/** Everything a store holds at one instant. */
export interface InventorySnapshot {
  hosts: HostRecord[];
  deployments: DeploymentRecord[];
}

/**
 * A change to one record: the fields to set, or a function of the current record that returns
 * them (`undefined`: change nothing). A function may run more than once (a store that retries a
 * compare-and-swap calls it again with the newer record), so it must not have side effects. A
 * field set to `undefined` is removed; the id never changes.
 */
export type RecordPatch = Partial<HostRecord> | ((current: HostRecord) => Partial<HostRecord> | undefined);

/** Conditions a patch or removal must meet, checked atomically with the write. */
export interface WriteCondition {
  /** Only when the record is in one of these states now. */
  state?: HostState | readonly HostState[];
}

/**
 * One exclusive claim on a resource of a pool (e.g. a static machine), held by a record (its
 * `reserved` field). A resource is claimed by at most one record at a time across every process
 * (and every machine, for a shared store); the claim goes away with the record.
 */
export interface Reservation {
  /** The pool: the provider's name, e.g. `static` (one machine is one resource, whatever instance lists it). */
  pool: string;
  /** The resource within the pool, e.g. the machine's address. */
  resource: string;
  /** The record that holds it. */
  recordId: string;
}

/**
 * What a store reports to a watcher: a record's state after a change (`undefined`: removed).
 * Changes close together may be reported as one (the latest state), never out of order per record.
 */
export type InventoryChange =
  | { kind: 'host'; id: string; record: HostRecord | undefined }
  | { kind: 'deployment'; id: string; deployment: DeploymentRecord | undefined }
  /** Something changed that the store cannot say exactly (e.g. the file was replaced): re-read. */
  | { kind: 'reset' };

/** Where records live. Every operation is atomic; all are safe from many processes at once. */
export interface InventoryStore {
  /** `file`, `etcd`, or a third party's name. */
  readonly kind: string;
  /** Where it is, for messages: a file path, or endpoints and prefix. */
  readonly location: string;

  /** All host records. */
  list(): Promise<HostRecord[]>;
  /** One record by id. */
  get(id: string): Promise<HostRecord | undefined>;
  /** Hosts and deployments as one consistent view. */
  snapshot(): Promise<InventorySnapshot>;
  /**
   * Whether a record id exists right now, read fresh. Reaping asks this before it removes a
   * resource; a store that cannot tell (unreadable) answers true, so nothing is removed.
   */
  has(id: string): Promise<boolean>;

  /**
   * Adds new records in one step (all or none); fails with an InventoryError when an id exists
   * already, and with a UserInputError naming the field when a record is invalid.
   */
  add(records: readonly HostRecord[]): Promise<void>;
  /**
   * Changes one record; returns the new record (the current one when the patch changes nothing),
   * or undefined when it is gone or `when` did not hold. The result is validated: an invalid
   * record (UserInputError) or a `reserved` resource another record holds (InventoryError) is
   * refused and nothing changes.
   */
  patch(id: string, change: RecordPatch, when?: WriteCondition): Promise<HostRecord | undefined>;
  /** Removes records (and the reservations they hold); returns the ids that were there. */
  remove(ids: readonly string[], when?: WriteCondition): Promise<string[]>;

  /**
   * Claims the first of `candidates` (in order) that no other record holds in `pool`, for
   * `recordId`, atomically, and returns it; undefined when all are held. (A shared store that
   * loses that first one to another worker's claim in the same instant takes a random free one
   * of the rest, so that racing workers spread out.) The record must exist
   * (an InventoryError otherwise: it was checked in meanwhile). A record holds one resource at a
   * time: a new claim replaces the one it had.
   */
  reserve(recordId: string, pool: string, candidates: readonly string[]): Promise<string | undefined>;
  /** Every claim in a pool (or in all pools). */
  reservations(pool?: string): Promise<Reservation[]>;

  /** Records or replaces a deployment. */
  putDeployment(deployment: DeploymentRecord): Promise<void>;
  /** Removes a deployment record (its hosts are removed separately). */
  removeDeployment(id: string): Promise<boolean>;

  /**
   * Calls `onChange` for changes made by anyone (this instance, another process, another
   * machine) after it returns; returns a function that stops watching. A watch never keeps the
   * process alive.
   */
  watch?(onChange: (change: InventoryChange) => void): () => void;
  /**
   * Live workers of a shared store, by the id records carry in `worker` (a store without worker
   * liveness has no such method). A record whose worker is not listed is an orphan.
   */
  workers?(): Promise<ReadonlyMap<string, WorkerLiveness>>;
  /** Frees clients, watchers and timers (watches stop). */
  close(): Promise<void>;
}

/** What a shared store knows of a live worker. */
export interface WorkerLiveness {
  id: string;
  machine: string;
  pid: number;
  started: string;
}
