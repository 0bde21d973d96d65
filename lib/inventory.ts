/**
 * The local inventory: one JSON file in the broker directory, locked across processes with
 * proper-lockfile, written atomically (temp file, fsync, rename), mode 0600, validated on read.
 * A corrupted file is never overwritten: reads fail with an InventoryError naming the file and a
 * backup, and the last good version is kept beside it as `inventory.json.bak`.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { copyFile, link, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import fs, { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { sleep } from './concurrency.js';
import { InventoryError, UserInputError } from './errors.js';
import { isProcessAlive } from './identity.js';
import { formatIssues } from './settings.js';
import { type DeploymentRecord, type HostRecord, HostRecord as HostRecordSchema, InventoryFile } from './records.js';

/** File name of the inventory in the broker directory. */
export const INVENTORY_FILE = 'inventory.json';

const EMPTY: InventoryFile = { version: 1, hosts: [], deployments: [] };

/** Options for {@link Inventory}. */
export interface InventoryOptions {
  /** How long to wait for another process's lock before failing, in ms. */
  lockWaitMs?: number;
  /** A lock not refreshed for this long is considered stale (its process died). */
  staleMs?: number;
}

/** The inventory of one broker directory. Safe to use from many processes at once. */
export class Inventory {
  readonly directory: string;
  readonly path: string;
  private readonly lockPath: string;
  private readonly options: Required<InventoryOptions>;
  /** Serializes this process's updates before taking the file lock. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(directory: string, options: InventoryOptions = {}) {
    this.directory = directory;
    this.path = join(directory, INVENTORY_FILE);
    this.lockPath = join(directory, 'inventory.lock');
    this.options = { lockWaitMs: options.lockWaitMs ?? 120_000, staleMs: options.staleMs ?? 15_000 };
  }

  /** Reads and validates the inventory (no lock needed: writes are atomic renames). */
  async read(): Promise<InventoryFile> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return structuredClone(EMPTY);
      throw new InventoryError(`cannot read the inventory ${this.path}: ${(error as Error).message}`, { cause: error });
    }
    return this.parse(text);
  }

  /** All host records. */
  async hosts(): Promise<HostRecord[]> {
    return (await this.read()).hosts;
  }

  /**
   * Whether a record id is in the inventory right now (a synchronous fresh read). Reaping asks
   * this before removing a resource, so a checkout that started after reaping began is safe:
   * its record is written before its resource exists. An unreadable file answers true (keep).
   */
  hasSync(id: string): boolean {
    try {
      const data = JSON.parse(readFileSync(this.path, 'utf8')) as { hosts?: Array<{ id?: unknown }> };
      return (data.hosts ?? []).some((h) => h.id === id);
    } catch (error) {
      return (error as NodeJS.ErrnoException).code !== 'ENOENT';
    }
  }

  /** One record by id, or undefined. */
  async get(id: string): Promise<HostRecord | undefined> {
    return (await this.hosts()).find((h) => h.id === id);
  }

  /**
   * Runs `change` on the current inventory under the cross-process lock and writes the result
   * atomically. `change` mutates the object it is given; what it returns is returned.
   */
  update<T>(change: (data: InventoryFile) => T | Promise<T>): Promise<T> {
    const run = this.chain.then(() => this.locked(change));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Adds a record (validated). */
  async add(record: HostRecord): Promise<void> {
    const valid = validateRecord(record);
    await this.update((data) => {
      if (data.hosts.some((h) => h.id === valid.id)) throw new InventoryError(`a record with id ${valid.id} is already in the inventory.`);
      data.hosts.push(valid);
    });
  }

  /** Changes fields of a record; returns the new record, or undefined when it is gone. */
  async patch(id: string, fields: Partial<HostRecord>): Promise<HostRecord | undefined> {
    return this.update((data) => {
      const i = data.hosts.findIndex((h) => h.id === id);
      if (i < 0) return undefined;
      const next = validateRecord({ ...data.hosts[i]!, ...fields, id });
      data.hosts[i] = next;
      return next;
    });
  }

  /** Removes records by id; returns how many were removed. */
  async remove(ids: string | readonly string[]): Promise<number> {
    const set = new Set(typeof ids === 'string' ? [ids] : ids);
    return this.update((data) => {
      const before = data.hosts.length;
      data.hosts = data.hosts.filter((h) => !set.has(h.id));
      return before - data.hosts.length;
    });
  }

  /** Records or replaces a deployment. */
  async putDeployment(deployment: DeploymentRecord): Promise<void> {
    await this.update((data) => {
      data.deployments = data.deployments.filter((d) => d.id !== deployment.id);
      data.deployments.push(deployment);
    });
  }

  private async locked<T>(change: (data: InventoryFile) => T | Promise<T>): Promise<T> {
    await mkdir(this.directory, { recursive: true });
    const release = await this.acquire();
    try {
      const data = await this.read();
      const before = JSON.stringify(data);
      const result = await change(data);
      const valid = InventoryFile.safeParse(data);
      if (!valid.success) throw new InventoryError(`refusing to write an invalid inventory (${formatIssues(valid.error)}); nothing was changed.`);
      const text = JSON.stringify(valid.data, null, 2) + '\n';
      if (text !== JSON.stringify(JSON.parse(before), null, 2) + '\n') await this.write(text);
      return result;
    } finally {
      await release().catch(() => undefined);
    }
  }

  /**
   * Takes the cross-process lock. The lock is a file naming its holder from the instant it exists
   * (see `lockFs`), so a lock whose holder on this machine has died is broken at once instead of
   * after proper-lockfile's stale time (one naming no owner after a 2 s grace); one breaker at a time.
   */
  private async acquire(): Promise<() => Promise<void>> {
    const deadline = Date.now() + this.options.lockWaitMs;
    let delay = 2;
    for (;;) {
      try {
        return await lockfile.lock(this.directory, {
          lockfilePath: this.lockPath,
          fs: lockFs,
          stale: this.options.staleMs,
          update: Math.max(1000, Math.floor(this.options.staleMs / 3)),
          retries: 0,
          realpath: false,
          // A holder stalled past the stale time lost the lock; its write still lands atomically.
          onCompromised: () => undefined,
        });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') {
          throw new InventoryError(`cannot lock the inventory ${this.path}: ${(error as Error).message}`, { cause: error });
        }
      }
      if (await this.breakAbandonedLock()) continue;
      if (Date.now() > deadline) {
        throw new InventoryError(
          `the inventory ${this.path} stayed locked for ${Math.round(this.options.lockWaitMs / 1000)} s by another process; wait for it, or remove ${this.lockPath} if no hostbroker process is running.`,
        );
      }
      await sleep(delay * (0.5 + Math.random()));
      // Short waits: the lock is held for a few ms; long backoffs only waste time under contention.
      delay = Math.min(delay * 1.5, 40);
    }
  }

  /** Removes the lock when nobody can be holding it (see `isAbandoned`). True when it did. */
  private async breakAbandonedLock(): Promise<boolean> {
    const seen = await this.lockState();
    if (!seen || !isAbandoned(seen)) return false;
    const breaking = `${this.lockPath}.breaking`;
    try {
      await mkdir(breaking);
    } catch {
      // Someone else is breaking it; a breaker that died leaves a dir that goes stale.
      const age = Date.now() - ((await stat(breaking).catch(() => undefined))?.mtimeMs ?? Date.now());
      if (age > 10_000) await rm(breaking, { recursive: true, force: true });
      return false;
    }
    try {
      // Still the same abandoned lock? (Nobody else can take the lock while it exists.)
      const again = await this.lockState();
      if (!again || again.ino !== seen.ino || again.owner !== seen.owner || !isAbandoned(again)) return false;
      await rm(this.lockPath, { recursive: true, force: true });
      return true;
    } finally {
      await rm(breaking, { recursive: true, force: true });
    }
  }

  /** The lock as it is now (inode, mtime and owner read from one open file), or undefined when there is none. */
  private async lockState(): Promise<LockState | undefined> {
    const st = await stat(this.lockPath).catch(() => undefined);
    if (!st) return undefined;
    // A directory is a lock proper-lockfile made itself: it names no owner.
    if (st.isDirectory()) return { ino: st.ino, mtimeMs: st.mtimeMs, owner: '' };
    const handle = await open(this.lockPath, 'r').catch(() => undefined);
    if (!handle) return undefined;
    try {
      const [s, owner] = await Promise.all([handle.stat(), handle.readFile('utf8')]);
      return { ino: s.ino, mtimeMs: s.mtimeMs, owner };
    } catch {
      return undefined;
    } finally {
      await handle.close();
    }
  }

  private async parse(text: string): Promise<InventoryFile> {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      return this.corrupt(`it is not valid JSON (${(error as Error).message})`);
    }
    const result = InventoryFile.safeParse(json);
    if (!result.success) return this.corrupt(`it does not match the inventory format (${formatIssues(result.error)})`);
    return result.data;
  }

  private async corrupt(why: string): Promise<never> {
    const backup = `${this.path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    // Keep a copy of the broken file before anyone edits it.
    await copyFile(this.path, backup).catch(() => undefined);
    throw new InventoryError(
      `the inventory ${this.path} is corrupted: ${why}. It was not changed; a copy is kept at ${backup}` +
        `, and the last good version (if any) at ${this.path}.bak. Repair the file or restore the .bak copy, then run \`hostbroker inventory --sync\` to find hosts again.`,
    );
  }

  private async write(text: string): Promise<void> {
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      // The old file survives as .bak through a hard link: no data copied.
      await rm(`${this.path}.bak`, { force: true });
      await link(this.path, `${this.path}.bak`).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
      await rename(tmp, this.path);
    } catch (error) {
      await rm(tmp, { force: true });
      throw new InventoryError(`cannot write the inventory ${this.path}: ${(error as Error).message}`, { cause: error });
    }
    const dir = await open(this.directory, 'r').catch(() => undefined);
    await dir?.sync().catch(() => undefined);
    await dir?.close();
  }
}

interface LockState {
  ino: number;
  mtimeMs: number;
  /** The lock file's content, `pid machine\n`; empty for a lock that names no owner. */
  owner: string;
}

/** What the lock holds: who took it. */
function ownerLine(): string {
  return `${process.pid} ${hostname()}\n`;
}

/**
 * How long a lock that names no owner is left alone. Every lock this module takes names its owner
 * from its first instant, so an ownerless one was made otherwise: as proper-lockfile's own mkdir'd
 * directory (as hostbroker did before owners lived in the lock), or it lost its content in a
 * machine crash. A maker that writes its owner note after mkdir needs milliseconds for it; 2 s is
 * ample margin for that, and far below the 15 s stale time we would otherwise wait. (Not a
 * liveness test: a live holder refreshes the mtime only every max(1 s, stale/3).)
 */
const OWNERLESS_GRACE_MS = 2000;

/**
 * Whether nobody can be holding this lock: its owner is a dead process on this machine, or it
 * names no owner and is older than `OWNERLESS_GRACE_MS`. A live owner, or one on another
 * machine, is left to proper-lockfile's stale time.
 */
function isAbandoned(lock: LockState): boolean {
  const owner = /^(\d+) (\S+)\n$/.exec(lock.owner);
  if (owner) return owner[2] === hostname() && Number(owner[1]) > 0 && !isProcessAlive(Number(owner[1]));
  return Date.now() - lock.mtimeMs > OWNERLESS_GRACE_MS;
}

type Callback = (error: NodeJS.ErrnoException | null) => void;

/**
 * The file system proper-lockfile sees. Where it would mkdir a lock directory, the lock becomes a
 * file holding its owner (`pid machine`): written under a temporary name, then hard-linked into
 * place, which is atomic and fails with EEXIST while the lock is held. So no lock of ours ever
 * exists without its owner, even when its taker is SIGKILLed halfway; and the owner goes away
 * with the lock, on release, on a stale break and in proper-lockfile's exit cleanup alike, so a
 * note can never outlive its lock and be mistaken for a later holder's. proper-lockfile only
 * stats and touches the lock otherwise, which works on a file as on a directory.
 */
const lockFs = {
  ...fs,
  mkdir(path: string, callback: Callback): void {
    // While the lock is held (the common case when waiting), fail without writing a temp file.
    fs.lstat(path, (absent) => {
      if (!absent) return callback(Object.assign(new Error(`EEXIST: ${path} exists`), { code: 'EEXIST' }));
      const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
      fs.writeFile(temp, ownerLine(), { flag: 'wx' }, (error) => {
        if (error) return callback(error);
        fs.link(temp, path, (linked) => fs.unlink(temp, () => callback(linked)));
      });
    });
  },
  rmdir(path: string, callback: Callback): void {
    fs.rm(path, { recursive: true }, callback);
  },
  rmdirSync(path: string): void {
    fs.rmSync(path, { recursive: true });
  },
};

/** Validates one record, with a message that names the field. */
export function validateRecord(record: unknown): HostRecord {
  const r = HostRecordSchema.safeParse(record);
  if (!r.success) throw new UserInputError(`invalid inventory record: ${formatIssues(r.error)}`);
  return r.data;
}
