import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { InventoryError } from '../lib/errors.js';
import { Inventory } from '../lib/inventory.js';
import type { HostRecord } from '../lib/records.js';

const run = promisify(execFile);
const dir = () => mkdtemp(join(tmpdir(), 'hb-inv-'));
const record = (id: string): HostRecord => ({
  id,
  name: id,
  hostname: '',
  provider: 'local',
  instance: 'default',
  state: 'provisioning',
  recipe: { provider: 'local', args: {} },
  owner: 'me',
  brokerId: 'b',
  createdAt: new Date().toISOString(),
  data: {},
});

const INVENTORY_MODULE = JSON.stringify(join(process.cwd(), 'lib/inventory.ts'));
const KEEP_ALIVE = `process.stdout.write('held\\n'); await new Promise(() => setInterval(() => {}, 1 << 30));`;
const holders: Array<{ child: ChildProcess; exited: Promise<void> }> = [];
afterEach(async () => {
  for (const h of holders.splice(0)) {
    h.child.kill('SIGKILL');
    await h.exited;
  }
});

/** Starts a process running `code`, once it has printed `held`; `kill` SIGKILLs it and waits for its end. */
async function holder(code: string): Promise<{ pid: number; kill: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  holders.push({ child, exited });
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
  return {
    pid: child.pid!,
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** A process holding the inventory lock through Inventory, inside an update that never ends. */
const inventoryHolder = (d: string) =>
  holder(`
    import { Inventory } from ${INVENTORY_MODULE};
    await new Inventory(${JSON.stringify(d)}).update(async () => { ${KEEP_ALIVE} });
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

describe('inventory', () => {
  it('adds, patches and removes records in a 0600 file, keeping the last good copy', async () => {
    const inv = new Inventory(await dir());
    await inv.add(record('a'));
    await inv.add(record('b'));
    expect((await inv.patch('a', { state: 'ready', hostname: 'h' }))?.hostname).toBe('h');
    expect(await inv.remove('b')).toBe(1);
    expect((await inv.hosts()).map((h) => h.id)).toEqual(['a']);
    expect((await stat(inv.path)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(`${inv.path}.bak`, 'utf8')).hosts).toHaveLength(2);
  });

  it('refuses a duplicate id and an invalid record without changing the file', async () => {
    const inv = new Inventory(await dir());
    await inv.add(record('a'));
    const before = await readFile(inv.path, 'utf8');
    await expect(inv.add(record('a'))).rejects.toThrow(InventoryError);
    await expect(inv.patch('a', { state: 'bogus' as never })).rejects.toThrow(/state/);
    expect(await readFile(inv.path, 'utf8')).toBe(before);
  });

  it('never overwrites a corrupted file: a clear error, the file untouched, a copy kept', async () => {
    const d = await dir();
    const inv = new Inventory(d);
    await inv.add(record('a'));
    const good = await readFile(inv.path, 'utf8');
    const broken = good.slice(0, good.length / 2);
    await writeFile(inv.path, broken);
    await expect(inv.hosts()).rejects.toThrow(/is corrupted: it is not valid JSON.*restore the \.bak/s);
    await expect(inv.add(record('b'))).rejects.toThrow(InventoryError);
    expect(await readFile(inv.path, 'utf8')).toBe(broken);
    const copies = (await readdir(d)).filter((f) => f.includes('.corrupt-'));
    expect(copies.length).toBeGreaterThan(0);
    expect(await readFile(join(d, copies[0]!), 'utf8')).toBe(broken);
  });

  it('two processes writing at once lose nothing', async () => {
    const d = await dir();
    const worker = (tag: string) => `
      import { Inventory } from ${JSON.stringify(join(process.cwd(), 'lib/inventory.ts'))};
      const inv = new Inventory(${JSON.stringify(d)});
      const base = { name: 'n', hostname: '', provider: 'local', instance: 'default', state: 'ready', recipe: { provider: 'local', args: {} }, owner: 'o', brokerId: 'b', createdAt: new Date().toISOString(), data: {} };
      await Promise.all(Array.from({ length: 40 }, (_, i) => inv.add({ ...base, id: '${tag}-' + i })));
    `;
    await Promise.all(['p', 'q'].map((tag) => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', worker(tag)])));
    const ids = (await new Inventory(d).hosts()).map((h) => h.id);
    expect(ids).toHaveLength(80);
    expect(new Set(ids).size).toBe(80);
  });

  it('a lock names its holder from the start; a holder SIGKILLed with it does not block the next update', async () => {
    const d = await dir();
    await new Inventory(d).add(record('a'));
    const h = await inventoryHolder(d);
    expect(await readFile(join(d, 'inventory.lock'), 'utf8')).toBe(`${h.pid} ${hostname()}\n`);
    await h.kill();
    const inv = new Inventory(d, patient);
    await inv.add(record('b'));
    expect((await inv.hosts()).map((x) => x.id)).toEqual(['a', 'b']);
    expect((await readdir(d)).filter((f) => f.startsWith('inventory.lock'))).toEqual([]);
  });

  it('a lock that names no owner, whose holder died, is broken after a short grace, not the stale time', async () => {
    const d = await dir();
    await new Inventory(d).add(record('a'));
    const h = await ownerlessHolder(d);
    await h.kill();
    const inv = new Inventory(d, patient);
    await inv.add(record('b'));
    expect((await inv.hosts()).map((x) => x.id)).toEqual(['a', 'b']);
    expect((await readdir(d)).filter((f) => f.startsWith('inventory.lock'))).toEqual([]);
  });

  it('a young lock that names no owner is not broken, however long the wait', async () => {
    const d = await dir();
    await new Inventory(d).add(record('a'));
    await ownerlessHolder(d);
    // An mtime ahead stands for a holder that keeps its lock fresh, without racing its refresh timer.
    const ahead = new Date(Date.now() + 60_000);
    await utimes(join(d, 'inventory.lock'), ahead, ahead);
    // Longer than the 2 s grace: the age is the lock's, not the waiter's.
    const inv = new Inventory(d, { staleMs: 60_000, lockWaitMs: 4000 });
    await expect(inv.add(record('b'))).rejects.toThrow(/stayed locked/);
    expect((await stat(join(d, 'inventory.lock'))).isDirectory()).toBe(true);
    expect((await inv.hosts()).map((x) => x.id)).toEqual(['a']);
  });

  it('a live holder on this machine is never broken, however old its lock', async () => {
    const d = await dir();
    await new Inventory(d).add(record('a'));
    await inventoryHolder(d);
    // Its lock's mtime far in the past: only the owner's liveness counts.
    const past = new Date(Date.now() - 30_000);
    await utimes(join(d, 'inventory.lock'), past, past);
    const inv = new Inventory(d, { staleMs: 60_000, lockWaitMs: 4000 });
    await expect(inv.add(record('b'))).rejects.toThrow(/stayed locked/);
    expect((await inv.hosts()).map((x) => x.id)).toEqual(['a']);
  });
});
