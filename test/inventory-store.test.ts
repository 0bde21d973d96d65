import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { BrokerError, InventoryError } from '../lib/errors.js';
import { FileInventoryStore, Inventory } from '../lib/inventory/index.js';
import type { HostRecord, InventoryFile } from '../lib/records.js';
import { sampleRecord as record, testInventoryStore } from '../lib/testing/store-suite.js';

const run = promisify(execFile);
const dir = () => mkdtemp(join(tmpdir(), 'hb-inv-'));
const STORE_MODULE = JSON.stringify(join(process.cwd(), 'lib/inventory/index.ts'));
const KEEP_ALIVE = `process.stdout.write('held\\n'); await new Promise(() => setInterval(() => {}, 1 << 30));`;

// Every instance the suite makes for one place is a separate FileInventoryStore on that directory,
// as a second process would have: they share nothing but the files.
testInventoryStore('file', async (sameAs) => new FileInventoryStore(sameAs ? (sameAs as FileInventoryStore).directory : await dir()));

interface Child {
  pid: number;
  kill: () => Promise<void>;
  /** Its whole stdout once it has exited. */
  done: Promise<string>;
}
const children: Array<{ child: ChildProcess; exited: Promise<void> }> = [];
afterEach(async () => {
  for (const h of children.splice(0)) {
    h.child.kill('SIGCONT');
    h.child.kill('SIGKILL');
    await h.exited;
  }
});

/** Starts a process running `code`, once it has printed `held`. */
async function holder(code: string): Promise<Child> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  children.push({ child, exited });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += String(d)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += String(d);
      if (out.includes('held\n')) resolve();
    });
    void exited.then(() => reject(new Error(`the lock holder exited before holding the lock: ${err}`)));
  });
  const done = exited.then(() => (child.exitCode === 0 ? out : Promise.reject(new Error(`the holder failed (${child.exitCode}): ${err}`))));
  done.catch(() => undefined); // only the tests that wait for the end look at it
  return {
    pid: child.pid!,
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
    done,
  };
}

/** A process holding the inventory lock, inside an update that never ends. */
const inventoryHolder = (d: string) =>
  holder(`
    import { FileInventoryStore } from ${STORE_MODULE};
    await new FileInventoryStore(${JSON.stringify(d)}).update(async () => { ${KEEP_ALIVE} });
  `);

/** A process holding the lock as proper-lockfile makes it by itself: a directory naming no owner. */
const ownerlessHolder = (d: string) =>
  holder(`
    import lockfile from 'proper-lockfile';
    await lockfile.lock(${JSON.stringify(d)}, { lockfilePath: ${JSON.stringify(join(d, 'inventory.lock'))}, realpath: false, stale: 60_000, onCompromised: () => {} });
    ${KEEP_ALIVE}
  `);

/** Waits long enough for any grace or dead-holder rule, but far less than the stale time. */
const patient = { staleMs: 60_000, lockWaitMs: 10_000 };

const fileOf = async (d: string): Promise<InventoryFile> => JSON.parse(await readFile(join(d, 'inventory.json'), 'utf8')) as InventoryFile;
/** Lock, breaker and temp files left in the directory. */
const leftovers = async (d: string) => (await readdir(d)).filter((f) => f.startsWith('inventory.lock') || f.endsWith('.tmp'));

describe('file inventory store', () => {
  it('adds, patches and removes records in a 0600 file, keeping the last good copy', async () => {
    const inv = new FileInventoryStore(await dir());
    await inv.add([record('a')]);
    await inv.add([record('b')]);
    expect((await inv.patch('a', { state: 'ready', hostname: 'h' }))?.hostname).toBe('h');
    expect(await inv.remove(['b'])).toEqual(['b']);
    expect((await inv.list()).map((h) => h.id)).toEqual(['a']);
    expect((await stat(inv.path)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(`${inv.path}.bak`, 'utf8')).hosts).toHaveLength(2);
  });

  it('refuses a duplicate id and an invalid record without changing the file', async () => {
    const inv = new FileInventoryStore(await dir());
    await inv.add([record('a')]);
    const before = await readFile(inv.path, 'utf8');
    await expect(inv.add([record('a')])).rejects.toThrow(InventoryError);
    await expect(inv.patch('a', { state: 'bogus' as never })).rejects.toThrow(/state/);
    expect(await readFile(inv.path, 'utf8')).toBe(before);
  });

  it('every write raises the generation; an operation that changes nothing writes nothing', async () => {
    const d = await dir();
    const inv = new FileInventoryStore(d);
    await inv.add([record('a')]);
    expect((await fileOf(d)).generation).toBe(1);
    await inv.patch('a', { state: 'ready' });
    expect((await fileOf(d)).generation).toBe(2);
    const before = await readFile(inv.path, 'utf8');
    expect(await inv.patch('a', { state: 'ready' }, { state: 'ready' })).toMatchObject({ state: 'ready' });
    expect(await inv.remove(['missing'])).toEqual([]);
    expect(await readFile(inv.path, 'utf8')).toBe(before);
  });

  it('keeps the exported name Inventory and the single-record forms of add and remove', async () => {
    expect(Inventory).toBe(FileInventoryStore);
    const inv = new Inventory(await dir());
    await inv.add(record('a'));
    await inv.add(record('b'));
    expect(await inv.has('a')).toBe(true);
    expect(await inv.remove('a')).toEqual(['a']);
    expect((await inv.list()).map((h) => h.id)).toEqual(['b']);
    expect((await inv.snapshot()).hosts.map((h) => h.id)).toEqual(['b']);
    expect(await inv.has('a')).toBe(false);
  });

  it('never overwrites a corrupted file: a clear error, the file untouched, a copy kept', async () => {
    const d = await dir();
    const inv = new FileInventoryStore(d);
    await inv.add([record('a')]);
    const good = await readFile(inv.path, 'utf8');
    const broken = good.slice(0, good.length / 2);
    await writeFile(inv.path, broken);
    await expect(inv.list()).rejects.toThrow(/is corrupted: it is not valid JSON.*restore the \.bak/s);
    await expect(inv.add([record('b')])).rejects.toThrow(InventoryError);
    expect(await inv.has('a')).toBe(true); // unreadable: reaping keeps everything
    expect(await readFile(inv.path, 'utf8')).toBe(broken);
    const copies = (await readdir(d)).filter((f) => f.includes('.corrupt-'));
    expect(copies.length).toBeGreaterThan(0);
    expect(await readFile(join(d, copies[0]!), 'utf8')).toBe(broken);
  });

  it('two processes writing at once lose nothing', async () => {
    const d = await dir();
    const worker = (tag: string) => `
      import { FileInventoryStore } from ${STORE_MODULE};
      const inv = new FileInventoryStore(${JSON.stringify(d)});
      const base = { name: 'n', hostname: '', provider: 'local', instance: 'default', state: 'ready', recipe: { provider: 'local', args: {} }, owner: 'o', brokerId: 'b', createdAt: new Date().toISOString(), data: {} };
      await Promise.all(Array.from({ length: 40 }, (_, i) => inv.add([{ ...base, id: '${tag}-' + i }])));
    `;
    await Promise.all(['p', 'q'].map((tag) => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', worker(tag)])));
    const ids = (await new FileInventoryStore(d).list()).map((h) => h.id);
    expect(ids).toHaveLength(80);
    expect(new Set(ids).size).toBe(80);
  });

  it('three processes reserving from one pool at once claim each machine once', async () => {
    const d = await dir();
    const store = new FileInventoryStore(d);
    const records = Array.from({ length: 12 }, (_, i) => record(`r${i}`));
    await store.add(records);
    const candidates = ['m1', 'm2', 'm3', 'm4', 'm5'];
    const worker = (ids: string[]) => `
      import { FileInventoryStore } from ${STORE_MODULE};
      const s = new FileInventoryStore(${JSON.stringify(d)});
      const got = await Promise.all(${JSON.stringify(ids)}.map((id) => s.reserve(id, 'static/default', ${JSON.stringify(candidates)})));
      process.stdout.write(JSON.stringify(got.filter((g) => g !== undefined)));
    `;
    const outs = await Promise.all(
      [0, 1, 2].map((k) =>
        run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', worker(records.filter((_, i) => i % 3 === k).map((r) => r.id))]),
      ),
    );
    const claimed = outs.flatMap((o) => JSON.parse(o.stdout) as string[]);
    expect(claimed.sort()).toEqual(candidates);
    expect((await store.reservations('static/default')).map((r) => r.resource).sort()).toEqual(candidates);
  });

  it('a watch never keeps its process alive', async () => {
    const d = await dir();
    const code = `
      import { FileInventoryStore } from ${STORE_MODULE};
      const s = new FileInventoryStore(${JSON.stringify(d)});
      s.watch(() => {});
      await s.add([${JSON.stringify(record('a'))}]);
      process.stdout.write('watching');
    `;
    // Resolves only when the process exits of itself.
    expect((await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code])).stdout).toBe('watching');
  });

  it('a lock names its holder from the start; a holder SIGKILLed with it does not block the next update', async () => {
    const d = await dir();
    await new FileInventoryStore(d).add([record('a')]);
    const h = await inventoryHolder(d);
    expect(await readFile(join(d, 'inventory.lock'), 'utf8')).toBe(`${h.pid} ${hostname()}\n`);
    await h.kill();
    const inv = new FileInventoryStore(d, patient);
    await inv.add([record('b')]);
    expect((await inv.list()).map((x) => x.id)).toEqual(['a', 'b']);
    expect(await leftovers(d)).toEqual([]);
  });

  it('a lock that names no owner, whose holder died, is broken after a short grace, not the stale time', async () => {
    const d = await dir();
    await new FileInventoryStore(d).add([record('a')]);
    const h = await ownerlessHolder(d);
    await h.kill();
    const inv = new FileInventoryStore(d, patient);
    await inv.add([record('b')]);
    expect((await inv.list()).map((x) => x.id)).toEqual(['a', 'b']);
    expect(await leftovers(d)).toEqual([]);
  });

  it('a young lock that names no owner is not broken, however long the wait', async () => {
    const d = await dir();
    await new FileInventoryStore(d).add([record('a')]);
    await ownerlessHolder(d);
    // An mtime ahead stands for a holder that keeps its lock fresh, without racing its refresh timer.
    const ahead = new Date(Date.now() + 60_000);
    await utimes(join(d, 'inventory.lock'), ahead, ahead);
    // Longer than the 2 s grace: the age is the lock's, not the waiter's.
    const inv = new FileInventoryStore(d, { staleMs: 60_000, lockWaitMs: 4000 });
    await expect(inv.add([record('b')])).rejects.toThrow(/stayed locked/);
    expect((await stat(join(d, 'inventory.lock'))).isDirectory()).toBe(true);
    expect((await inv.list()).map((x) => x.id)).toEqual(['a']);
  });

  it('a live holder on this machine is never broken, however old its lock', async () => {
    const d = await dir();
    await new FileInventoryStore(d).add([record('a')]);
    await inventoryHolder(d);
    // Its lock's mtime far in the past: only the owner's liveness counts.
    const past = new Date(Date.now() - 30_000);
    await utimes(join(d, 'inventory.lock'), past, past);
    const inv = new FileInventoryStore(d, { staleMs: 60_000, lockWaitMs: 4000 });
    await expect(inv.add([record('b')])).rejects.toThrow(/stayed locked/);
    expect((await inv.list()).map((x) => x.id)).toEqual(['a']);
  });
});

/** The process state letter from /proc (`T`: stopped). */
const stateOf = (pid: number): string => /\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))![1]!;

async function stopped(pid: number): Promise<void> {
  while (stateOf(pid) !== 'T') await new Promise((r) => setTimeout(r, 5));
}

/** Code that runs `body` in a child with a short stale time; `stopHere()` SIGSTOPs the child the first time, after printing `held`. */
const stallingChild = (d: string, body: string) => `
  import { writeSync } from 'node:fs';
  import { FileInventoryStore } from ${STORE_MODULE};
  const store = new FileInventoryStore(${JSON.stringify(d)}, { staleMs: 2000, lockWaitMs: 30_000 });
  let calls = 0;
  const stopHere = () => {
    if (calls++ > 0) return;
    writeSync(1, 'held\\n');
    process.kill(process.pid, 'SIGSTOP');
  };
  ${body}
`;

/** A foreign writer: replaces the file by rename with a newer generation, as another process would. */
function replaceFile(d: string, change: (data: InventoryFile) => void): void {
  const path = join(d, 'inventory.json');
  const data = JSON.parse(readFileSync(path, 'utf8')) as InventoryFile;
  change(data);
  data.generation = (data.generation ?? 0) + 1;
  writeFileSync(`${path}.foreign`, JSON.stringify(data));
  renameSync(`${path}.foreign`, path);
}

describe('fencing: a writer whose lock was taken or whose view is old never replaces a newer inventory', () => {
  it('a holder SIGSTOPped mid-write past the stale time: the newer write survives, and its patch is applied again on top', async () => {
    const d = await dir();
    await new FileInventoryStore(d).add([record('a')]);
    const child = await holder(
      stallingChild(
        d,
        `const result = await store.patch('a', (cur) => { stopHere(); return { data: { ...cur.data, stalled: true } }; });
         writeSync(1, JSON.stringify({ calls, result }) + '\\n');`,
      ),
    );
    await stopped(child.pid);
    // Another process takes the lock once it is stale (the stopped holder cannot refresh it) and writes.
    const other = new FileInventoryStore(d, { staleMs: 2000, lockWaitMs: 30_000 });
    await other.patch('a', (cur) => ({ data: { ...cur.data, other: true } }));
    expect(stateOf(child.pid)).toBe('T'); // that write happened while the holder was stopped
    expect((await fileOf(d)).hosts[0]!.data).toEqual({ other: true });
    process.kill(child.pid, 'SIGCONT');
    const out = JSON.parse((await child.done).trim().split('\n').pop()!) as { calls: number; result: HostRecord };
    expect(out.calls).toBe(2); // fenced off once, then applied to the newer record
    expect(out.result.data).toEqual({ other: true, stalled: true });
    const final = await fileOf(d);
    expect(final.hosts.map((h) => [h.id, h.data])).toEqual([['a', { other: true, stalled: true }]]);
    expect(final.generation).toBe(3);
    expect(await leftovers(d)).toEqual([]);
  });

  it('a holder SIGSTOPped inside a change that cannot be applied twice is refused with INVENTORY; the newer write survives', async () => {
    const d = await dir();
    await new FileInventoryStore(d).add([record('a')]);
    const child = await holder(
      stallingChild(
        d,
        `const outcome = await store.update((data) => { stopHere(); data.hosts[0].data.stalled = true; }).then(() => ({ code: 'none' }), (e) => ({ code: e.code, message: e.message }));
         writeSync(1, JSON.stringify({ calls, ...outcome }) + '\\n');`,
      ),
    );
    await stopped(child.pid);
    await new FileInventoryStore(d, { staleMs: 2000, lockWaitMs: 30_000 }).patch('a', { data: { other: true } });
    expect(stateOf(child.pid)).toBe('T');
    process.kill(child.pid, 'SIGCONT');
    const out = JSON.parse((await child.done).trim().split('\n').pop()!) as { calls: number; code: string; message: string };
    expect(out).toMatchObject({ calls: 1, code: 'INVENTORY' });
    expect(out.message).toMatch(/paused past the 2 s stale time.*nothing was lost/s);
    const final = await fileOf(d);
    expect(final.hosts[0]!.data).toEqual({ other: true });
    expect(final.generation).toBe(2);
    expect(await leftovers(d)).toEqual([]);
  });

  it('a file replaced under a writer (its view is older): a patch is applied again on the newer file, an update refused', async () => {
    const d = await dir();
    const store = new FileInventoryStore(d);
    await store.add([record('a')]);
    let calls = 0;
    const result = await store.patch('a', (cur) => {
      if (calls++ === 0) replaceFile(d, (data) => (data.hosts[0]!.lastError = 'newer'));
      return { data: { ...cur.data, mine: true } };
    });
    expect(calls).toBe(2);
    expect(result).toMatchObject({ lastError: 'newer', data: { mine: true } });
    const error = await store
      .update((data) => {
        replaceFile(d, (newer) => (newer.hosts[0]!.name = 'newest'));
        data.hosts[0]!.name = 'stale';
      })
      .catch((e: unknown) => e);
    expect(BrokerError.isInstance(error) && error.code).toBe('INVENTORY');
    expect((await store.get('a'))!).toMatchObject({ name: 'newest', lastError: 'newer', data: { mine: true } });
    expect(await leftovers(d)).toEqual([]);
  });

  it('a lock taken from a writer: it writes nothing, and leaves the new holder its lock', async () => {
    const d = await dir();
    const store = new FileInventoryStore(d);
    await store.add([record('a')]);
    const lock = join(d, 'inventory.lock');
    // The lock gone (broken as stale by another process that has finished since): applied again.
    let calls = 0;
    await store.patch('a', () => {
      if (calls++ === 0) rmSync(lock);
      return { name: 'renamed' };
    });
    expect(calls).toBe(2);
    expect((await store.get('a'))!.name).toBe('renamed');
    // The lock now another process's: refused, and that lock is not removed.
    const before = await readFile(store.path, 'utf8');
    const error = await store
      .update((data) => {
        rmSync(lock);
        writeFileSync(lock, '1 another-machine\n');
        data.hosts[0]!.name = 'stale';
      })
      .catch((e: unknown) => e);
    expect(BrokerError.isInstance(error) && error.code).toBe('INVENTORY');
    expect(await readFile(store.path, 'utf8')).toBe(before);
    expect(await readFile(lock, 'utf8')).toBe('1 another-machine\n');
    rmSync(lock);
  });
});
