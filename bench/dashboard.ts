/**
 * `npm run bench:dashboard`: time to first render of the dashboard in headless chromium with
 * 1,000 and 10,000 hosts in the inventory (navigation start to the first filled host table), and
 * how long a search and a re-sort take to show with as many. Medians of BENCH_ROUNDS (default 5).
 * Needs Debian's chromium (/usr/bin/chromium).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { coreOf } from '../lib/broker/core.js';
import { Broker } from '../lib/broker/index.js';
import { startDashboard } from '../lib/dashboard/server.js';
import { createLogger } from '../lib/logger.js';
import { HostRecord } from '../lib/records.js';
import { load, median, table } from './lib/stats.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SIZES = [1_000, 10_000];
const OWNERS = ['alice', 'bob', 'carol', 'dave'];

function records(n: number): HostRecord[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) =>
    HostRecord.parse({
      id: `hb-${randomBytes(6).toString('hex')}`,
      name: `host-${String(i).padStart(5, '0')}`,
      hostname: `10.0.${(i >> 8) & 255}.${i & 255}`,
      provider: i % 3 ? 'openstack' : 'container',
      instance: 'default',
      state: 'ready',
      recipe: { provider: 'openstack', args: { image: 'fedora-40', flavor: 'm1.small' } },
      owner: OWNERS[i % OWNERS.length],
      brokerId: 'bench',
      createdAt: new Date(now - i * 60_000).toISOString(),
      leaseExpires: new Date(now + (i % 48) * 3_600_000).toISOString(),
      connection: { kind: 'ssh', host: `10.0.${(i >> 8) & 255}.${i & 255}`, port: 22, username: 'cloud-user' },
      ...(i % 97 === 0 ? { kept: { reason: `test ${i} failed`, at: new Date(now).toISOString() } } : {}),
    }),
  );
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const rows: string[][] = [['hosts', 'first render ms', 'search ms', 'sort ms', 'rounds']];
try {
  for (const n of SIZES) {
    const directory = await mkdtemp(join(tmpdir(), 'hb-bench-dash-'));
    const broker = new Broker({ directory, logger: createLogger('silent') });
    await coreOf(broker).store.add(records(n));
    const dashboard = await startDashboard(broker, { port: 0 });
    const first: number[] = [];
    const search: number[] = [];
    const sort: number[] = [];
    try {
      // One unmeasured load first: the browser's and the server's first-use costs are not the page's.
      const warm = await browser.newContext();
      await (await warm.newPage()).goto(dashboard.url);
      await warm.close();
      for (let round = 0; round < ROUNDS; round++) {
        const context = await browser.newContext();
        const page = await context.newPage();
        await page.goto(dashboard.url);
        await page.waitForSelector('body[data-ready]');
        first.push(await page.evaluate(() => performance.getEntriesByName('hostbroker:first-render')[0]!.startTime));
        // A search narrowing 10,000 to a few, then the sort flipped: from input to rows shown.
        search.push(
          await page.evaluate(async () => {
            const doc = (globalThis as any).document;
            const started = performance.now();
            const input = doc.querySelector('#search');
            input.value = 'host-0099';
            input.dispatchEvent(new Event('input', { bubbles: true }));
            while (doc.querySelectorAll('#hosts tbody tr').length > 11) {
              if (performance.now() - started > 10_000) throw new Error('the search never showed');
              await new Promise((r) => setTimeout(r, 5));
            }
            return performance.now() - started - 200; // minus the page's input debounce
          }),
        );
        sort.push(
          await page.evaluate(async () => {
            const doc = (globalThis as any).document;
            const before = doc.querySelector('#hosts tbody tr .name').textContent;
            const started = performance.now();
            doc.querySelector('th[data-sort="name"]').click(); // name, descending
            while (doc.querySelector('#hosts tbody tr .name').textContent === before) {
              if (performance.now() - started > 10_000) throw new Error('the sort never showed');
              await new Promise((r) => setTimeout(r, 2));
            }
            return performance.now() - started;
          }),
        );
        await context.close();
      }
    } finally {
      await dashboard.close();
      await broker.close();
      await rm(directory, { recursive: true, force: true });
    }
    rows.push([n.toLocaleString('en'), median(first).toFixed(0), median(search).toFixed(0), median(sort).toFixed(0), String(ROUNDS)]);
  }
} finally {
  await browser.close();
}
console.log(`dashboard in headless ${browser.version()} (load ${load()}):`);
console.log(table(rows));
