import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
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
});
