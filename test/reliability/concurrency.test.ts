/**
 * Concurrency: 8 processes × 50 checkout/checkin cycles on one broker directory. While they run,
 * this process reads the inventory file as fast as it can: every read must be a valid inventory.
 * At the end the inventory is empty, the provider holds nothing, and every record created was
 * released exactly once (no record lost, none duplicated).
 */
import { spawn } from 'node:child_process';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { InventoryFile } from '../../lib/records.js';
import { nodeTs, reportFigures, ROOT, tempBrokerDir } from './util.js';

const PROCESSES = 8;
const CYCLES = 50;
const CHILD = join(ROOT, 'test', 'reliability', 'children', 'cycles.ts');

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

it(`${PROCESSES} processes × ${CYCLES} cycles on one directory lose and duplicate nothing`, { timeout: 240_000 }, async () => {
  const dir = await tempBrokerDir('hb-conc-');
  dirs.push(dir);
  const folder = join(dir, 'resources');
  const children = Array.from({ length: PROCESSES }, (_, i) => {
    const log = join(dir, `log-${i}.jsonl`);
    const [cmd, argv] = nodeTs(CHILD, dir, folder, String(CYCLES), log);
    const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += String(d)));
    return { log, exit: new Promise<{ code: number | null; stderr: string }>((r) => child.on('close', (code) => r({ code, stderr }))) };
  });

  let running = true;
  const all = Promise.all(children.map((c) => c.exit)).finally(() => (running = false));
  let reads = 0;
  let maxHosts = 0;
  const invalid: string[] = [];
  while (running) {
    const text = await readFile(join(dir, 'inventory.json'), 'utf8').catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : String(e)));
    if (text === undefined) continue;
    reads++;
    try {
      const parsed = InventoryFile.safeParse(JSON.parse(text));
      if (!parsed.success) invalid.push(parsed.error.message);
      else maxHosts = Math.max(maxHosts, parsed.data.hosts.length);
    } catch (error) {
      invalid.push(`${(error as Error).message}: ${text.slice(0, 80)}`);
    }
    await new Promise((r) => setImmediate(r));
  }
  const results = await all;
  for (const r of results) expect(r.code, r.stderr).toBe(0);
  expect(invalid).toEqual([]);
  expect(reads).toBeGreaterThan(100);

  const events = (await Promise.all(children.map((c) => readFile(c.log, 'utf8'))))
    .join('')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { pid: number; event: string; id?: string });
  const created = events.filter((e) => e.event === 'created').map((e) => e.id!);
  const released = events.filter((e) => e.event === 'released').map((e) => e.id!);
  const perProcess = CYCLES + Math.ceil(CYCLES / 5); // every fifth cycle takes two hosts
  expect(events.filter((e) => e.event === 'done')).toHaveLength(PROCESSES);
  expect(events.filter((e) => e.event === 'missing')).toEqual([]);
  expect(created).toHaveLength(PROCESSES * perProcess);
  expect(new Set(created).size).toBe(created.length); // no duplicate ids
  expect([...released].sort()).toEqual([...created].sort());

  const final = InventoryFile.parse(JSON.parse(await readFile(join(dir, 'inventory.json'), 'utf8')));
  expect(final.hosts).toEqual([]);
  expect(await readdir(folder)).toEqual([]); // the provider holds nothing
  expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);

  reportFigures('concurrency', {
    processes: PROCESSES,
    cycles: PROCESSES * CYCLES,
    hosts: created.length,
    inventoryReads: reads,
    invalidReads: invalid.length,
    maxHostsAtOnce: maxHosts,
  });
});
