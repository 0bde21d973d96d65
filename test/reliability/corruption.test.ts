/**
 * Corruption: a truncated or hand-broken inventory gives a clear InventoryError that names the
 * file, a kept copy and the last good backup; nothing overwrites it (not checkout, checkin, sync
 * or reap); no provider resource is created; restoring the `.bak` copy brings the hosts back.
 */
import { copyFile, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Broker, type CheckoutRequest } from '../../lib/broker/index.js';
import { BrokerError, InventoryError } from '../../lib/errors.js';
import { memoryProvider } from './children/memory-provider.js';
import { reportFigures, tempBrokerDir } from './util.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
  reportFigures('corruption', { corruptions: cases.length, operationsRefused: refused });
});

let refused = 0;

/** A directory with two hosts checked out (so there is a `.bak` of a good version). */
async function withHosts(): Promise<{ dir: string; broker: Broker; resources: string; good: string }> {
  const dir = await tempBrokerDir('hb-corrupt-');
  dirs.push(dir);
  const resources = join(dir, 'resources');
  const broker = new Broker({ directory: dir, providers: [memoryProvider(resources)], settings: { logLevel: 'silent' } });
  await broker.checkout({ provider: 'memory', count: 2 } as unknown as CheckoutRequest & { count: number });
  const good = await readFile(join(dir, 'inventory.json'), 'utf8');
  return { dir, broker, resources, good };
}

const cases: Array<[string, (good: string) => string]> = [
  ['truncated half-way', (good) => good.slice(0, Math.floor(good.length / 2))],
  ['empty', () => ''],
  ['hand-edited with a trailing comma', (good) => good.replace(/\n\s*\]/, ',\n  ]')],
  ['valid JSON of the wrong shape (unknown state)', (good) => good.replace(/"state": "ready"/, '"state": "sleeping"')],
  ['valid JSON of the wrong shape (a record without an id)', (good) => good.replace(/"id": "hb-[0-9a-f]+",/, '')],
  ['not an object', () => '[]\n'],
  ['binary garbage', () => '\u0000\u00ff\u0001garbage'],
];

describe('a corrupted inventory', () => {
  for (const [what, breakIt] of cases) {
    it(`${what}: clear error, never overwritten, copy and backup kept`, async () => {
      const { dir, broker, resources, good } = await withHosts();
      const path = join(dir, 'inventory.json');
      const broken = breakIt(good);
      expect(broken).not.toBe(good);
      await writeFile(path, broken);
      const resourcesBefore = (await readdir(resources)).sort();

      const attempts: Array<[string, () => Promise<unknown>]> = [
        ['inventory', () => broker.inventory()],
        ['checkout', () => broker.checkout({ provider: 'memory' } as unknown as CheckoutRequest)],
        ['checkin all', () => broker.checkin({ all: true })],
        ['sync', () => broker.sync('memory')],
        ['reap', () => broker.reap('memory')],
        ['a second Broker', () => new Broker({ directory: dir, providers: [memoryProvider(resources)] }).inventory()],
      ];
      for (const [op, attempt] of attempts) {
        const error = await attempt().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error, `${op} should fail`).toBeInstanceOf(InventoryError);
        expect(BrokerError.isInstance(error)).toBe(true);
        const message = (error as Error).message;
        expect(message).toContain(path);
        expect(message).toMatch(/is corrupted: .+ It was not changed; a copy is kept at .+\.corrupt-/s);
        expect(message).toContain(`${path}.bak`);
        expect(message).toMatch(/restore the \.bak copy/);
        refused++;
        // Never overwritten, and nothing created at the provider.
        expect(await readFile(path, 'utf8'), `${op} changed the file`).toBe(broken);
        expect((await readdir(resources)).sort()).toEqual(resourcesBefore);
      }
      const copies = (await readdir(dir)).filter((f) => f.startsWith('inventory.json.corrupt-'));
      expect(copies.length).toBeGreaterThan(0);
      for (const c of copies) expect(await readFile(join(dir, c), 'utf8')).toBe(broken);

      // The last good version is there: restoring it brings every host back, and checkin works.
      await copyFile(`${path}.bak`, path);
      const restored = await broker.inventory();
      expect(restored.length).toBeGreaterThanOrEqual(1);
      await broker.sync('memory');
      expect((await broker.inventory()).map((r) => r.id).sort()).toEqual(resourcesBefore);
      await broker.checkin({ all: true });
      expect(await readdir(resources)).toEqual([]);
    });
  }
});
