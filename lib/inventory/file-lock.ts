/**
 * The file store's cross-process lock: proper-lockfile over a lock *file* (`inventory.lock`) that
 * holds one line, `<pid> <machine>\n`, naming its holder from its first instant. A lock whose
 * holder is a dead process on this machine is broken at once; any other after the stale time. A
 * holder can ask whether the lock is still its own (`intact`): a holder paused past the stale time
 * loses it to another process, and must then not write (see `FileInventoryStore`).
 * @module
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { lazyRequire } from '../lazy-require.js';
import { sleep } from '../concurrency.js';
import { InventoryError } from '../errors.js';
import { isProcessAlive } from '../identity.js';

const lockfile = lazyRequire<typeof import('proper-lockfile')>('proper-lockfile');

/** How long to wait for a lock, and when a holder that stopped refreshing it counts as gone. */
export interface LockTimes {
  lockWaitMs: number;
  staleMs: number;
}

/** A lock this process took. */
export interface HeldLock {
  /** Whether the lock is still this holder's: not taken from it, and the same lock file naming it. */
  intact(): Promise<boolean>;
  /** Releases the lock; a lock another process has taken since is left alone. */
  release(): Promise<void>;
}

/** What one acquisition knows about its lock. */
interface Claim {
  /** Inode of the lock file it made. */
  ino: number;
  /** Set when proper-lockfile found the lock taken (its refresh came too late). */
  lost: boolean;
  /** Set on release when the lock is no longer ours: then nothing may remove it. */
  keep: boolean;
  token: symbol;
}

/** Which acquisition holds each lock path in this process (two stores may share a directory). */
const holding = new Map<string, symbol>();

/** The cross-process lock of one directory. */
export class FileLock {
  constructor(
    private readonly directory: string,
    private readonly lockPath: string,
    /** What it guards, for messages. */
    private readonly guarded: string,
    private readonly times: LockTimes,
  ) {}

  /**
   * Takes the lock. A lock whose holder on this machine has died is broken at once instead of
   * after proper-lockfile's stale time (one naming no owner after a 2 s grace); one breaker at a time.
   */
  async acquire(): Promise<HeldLock> {
    await mkdir(this.directory, { recursive: true });
    const deadline = Date.now() + this.times.lockWaitMs;
    let delay = 2;
    for (;;) {
      const claim: Claim = { ino: -1, lost: false, keep: false, token: Symbol(this.lockPath) };
      try {
        const release = await lockfile().lock(this.directory, {
          lockfilePath: this.lockPath,
          fs: lockFs(claim),
          stale: this.times.staleMs,
          update: Math.max(1000, Math.floor(this.times.staleMs / 3)),
          retries: 0,
          realpath: false,
          onCompromised: () => {
            claim.lost = true;
          },
        });
        holding.set(this.lockPath, claim.token);
        return this.held(claim, release);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') {
          throw new InventoryError(`cannot lock the inventory ${this.guarded}: ${(error as Error).message}`, { cause: error });
        }
      }
      if (await this.breakAbandonedLock()) continue;
      if (Date.now() > deadline) {
        throw new InventoryError(
          `the inventory ${this.guarded} stayed locked for ${Math.round(this.times.lockWaitMs / 1000)} s by another process; wait for it, or remove ${this.lockPath} if no hostbroker process is running.`,
        );
      }
      await sleep(delay * (0.5 + Math.random()));
      // Short waits: the lock is held for a few ms; long backoffs only waste time under contention.
      delay = Math.min(delay * 1.5, 40);
    }
  }

  private held(claim: Claim, release: () => Promise<void>): HeldLock {
    const intact = async (): Promise<boolean> => {
      if (claim.lost || holding.get(this.lockPath) !== claim.token) return false;
      const now = await lockState(this.lockPath);
      return now !== undefined && now.ino === claim.ino && now.owner === ownerLine();
    };
    return {
      intact,
      release: async () => {
        // proper-lockfile would remove whatever lock is there, even one taken from us meanwhile.
        if (!(await intact())) claim.keep = true;
        if (holding.get(this.lockPath) === claim.token) holding.delete(this.lockPath);
        await release().catch(() => undefined);
      },
    };
  }

  /** Removes the lock when nobody can be holding it (see `isAbandoned`). True when it did. */
  private async breakAbandonedLock(): Promise<boolean> {
    const seen = await lockState(this.lockPath);
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
      const again = await lockState(this.lockPath);
      if (!again || again.ino !== seen.ino || again.owner !== seen.owner || !isAbandoned(again)) return false;
      await rm(this.lockPath, { recursive: true, force: true });
      return true;
    } finally {
      await rm(breaking, { recursive: true, force: true });
    }
  }
}

interface LockState {
  ino: number;
  mtimeMs: number;
  /** The lock file's content, `pid machine\n`; empty for a lock that names no owner. */
  owner: string;
}

/** The lock as it is now (inode, mtime and owner read from one open file), or undefined when there is none. */
async function lockState(lockPath: string): Promise<LockState | undefined> {
  const st = await stat(lockPath).catch(() => undefined);
  if (!st) return undefined;
  // A directory is a lock proper-lockfile made itself: it names no owner.
  if (st.isDirectory()) return { ino: st.ino, mtimeMs: st.mtimeMs, owner: '' };
  const handle = await open(lockPath, 'r').catch(() => undefined);
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
 * names no owner and is older than `OWNERLESS_GRACE_MS`. A live owner (a stopped one too), or one
 * on another machine, is left to proper-lockfile's stale time.
 */
function isAbandoned(lock: LockState): boolean {
  const owner = /^(\d+) (\S+)\n$/.exec(lock.owner);
  if (owner) return owner[2] === hostname() && Number(owner[1]) > 0 && !isProcessAlive(Number(owner[1]));
  return Date.now() - lock.mtimeMs > OWNERLESS_GRACE_MS;
}

type Callback = (error: NodeJS.ErrnoException | null) => void;

/**
 * The file system proper-lockfile sees, for one acquisition. Where it would mkdir a lock
 * directory, the lock becomes a file holding its owner (`pid machine`): written under a temporary
 * name, then hard-linked into place, which is atomic and fails with EEXIST while the lock is held.
 * So no lock of ours ever exists without its owner, even when its taker is SIGKILLed halfway; and
 * the owner goes away with the lock, on release, on a stale break and in proper-lockfile's exit
 * cleanup alike, so a note can never outlive its lock and be mistaken for a later holder's.
 * proper-lockfile only stats and touches the lock otherwise, which works on a file as on a
 * directory. The inode made is noted in `claim`, and a released claim marked `keep` removes nothing.
 */
function lockFs(claim: Claim) {
  const remove = (path: string, callback: Callback): void => (claim.keep ? callback(null) : fs.rm(path, { recursive: true }, callback));
  return {
    ...fs,
    mkdir(path: string, callback: Callback): void {
      // While the lock is held (the common case when waiting), fail without writing a temp file.
      fs.lstat(path, (absent) => {
        if (!absent) return callback(Object.assign(new Error(`EEXIST: ${path} exists`), { code: 'EEXIST' }));
        const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
        fs.writeFile(temp, ownerLine(), { flag: 'wx' }, (error) => {
          if (error) return callback(error);
          fs.stat(temp, (statError, st) => {
            if (statError) return fs.unlink(temp, () => callback(statError));
            fs.link(temp, path, (linked) => {
              if (!linked) claim.ino = st.ino;
              fs.unlink(temp, () => callback(linked));
            });
          });
        });
      });
    },
    rmdir: remove,
    rmdirSync(path: string): void {
      if (!claim.keep) fs.rmSync(path, { recursive: true });
    },
  };
}
