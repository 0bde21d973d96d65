/**
 * `npm run bench:dashboard`: the dashboard as users run it (`hostbroker serve` in its own process)
 * in headless chromium, with 1,000 and 10,000 hosts in the inventory. Per round, a fresh browser
 * context (empty cache) opens the page, and the bench itself (not the page) records:
 * - first render: navigation start to the end of the first frame that shows a host row;
 * - interactive: navigation start to the page's script having taken over (`body[data-ready]`);
 * - then, as a measure of staying responsive: a search narrowing the list to 10 rows (input to
 *   rows shown, less the page's 200 ms input debounce), a re-sort and the next page (click to rows shown).
 * Medians of BENCH_ROUNDS (default 5); BENCH_RUNS (default 1) repeats everything. With
 * BENCH_BASELINE=<another checkout> (e.g. `git worktree add /tmp/base main`), that checkout's
 * `hostbroker serve` is measured too, round for round in turn, over the same inventory, and the
 * first-render ratio printed: figures from a busy machine compare fairly. Needs /usr/bin/chromium.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { coreOf } from '../lib/broker/core.js';
import { Broker } from '../lib/broker/index.js';
import { createLogger } from '../lib/logger.js';
import { HostRecord } from '../lib/records.js';
import { load, median, table } from './lib/stats.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const RUNS = Number(process.env.BENCH_RUNS ?? 1);
const BASELINE = process.env.BENCH_BASELINE;
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

/**
 * Runs in the page before any of its own script: each frame, before it is drawn, looks for a host
 * row; the first frame that has one is the first render, timed once that frame is done. A string,
 * not a function: tsx would add helpers to a function that the page does not have.
 */
const WATCH_FIRST_ROW = `(() => {
  const look = () => {
    if (!document.querySelector('#hosts tbody tr .name')?.textContent) return void requestAnimationFrame(look);
    const channel = new MessageChannel(); // runs after this frame's rendering
    channel.port1.onmessage = () => (globalThis.__firstRow = performance.now());
    channel.port2.postMessage(0);
  };
  requestAnimationFrame(look);
})();`;

/** Milliseconds from an action in the page (a click, or `search:TEXT` typed) to its rows shown (polled every 2 ms). */
function timeIn(page: Page, action: string, until: string, minus = 0): Promise<number> {
  return page.evaluate(
    async ([action, until, minus]) => {
      const doc = (globalThis as any).document;
      const before = doc.querySelector('#hosts tbody tr .name').textContent;
      const started = performance.now();
      const value = action.startsWith('search:') ? action.slice(7) : undefined;
      if (value !== undefined) {
        const input = doc.querySelector('#search');
        input.value = value;
        input.dispatchEvent(new Event('input', { bubbles: true }));
      } else doc.querySelector(action).click();
      // No named helper in here: tsx would wrap it in a function the page does not have.
      while (until === 'few' ? doc.querySelectorAll('#hosts tbody tr').length > 10 : doc.querySelector('#hosts tbody tr .name').textContent === before) {
        if (performance.now() - started > 10_000) throw new Error(`${action} never showed`);
        await new Promise((r) => setTimeout(r, 2));
      }
      return performance.now() - started - Number(minus);
    },
    [action, until, String(minus)] as const,
  );
}

/** `hostbroker serve` of the checkout `root` over `directory`, on a free port. */
async function serve(root: string, directory: string): Promise<{ url: string; stop: () => Promise<unknown> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'lib/cli/main.ts'), 'serve', '--port', '0'], {
    cwd: root,
    env: { ...process.env, BROKER_DIRECTORY: directory },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise((done) => child.once('exit', done));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += String(d)));
  const started = Date.now();
  while (!/dashboard at (\S+)/.test(stderr)) {
    if (child.exitCode !== null || Date.now() - started > 60_000) throw new Error(`hostbroker serve did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    url: /dashboard at (\S+)/.exec(stderr)![1]!,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

type Figures = Record<'first' | 'ready' | 'search' | 'sort' | 'next', number[]>;

/** One measured page load and its interactions, in a fresh browser context. */
async function round(url: string, figures: Figures): Promise<void> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript({ content: WATCH_FIRST_ROW });
  await page.goto(url);
  await page.waitForFunction(() => (globalThis as any).__firstRow !== undefined);
  figures.first.push(await page.evaluate(() => (globalThis as any).__firstRow));
  await page.waitForSelector('body[data-ready]');
  // (A baseline from before this mark had the same moment as 'hostbroker:first-render'.)
  figures.ready.push(
    await page.evaluate(
      () => (performance.getEntriesByName('hostbroker:ready')[0] ?? performance.getEntriesByName('hostbroker:first-render')[0])?.startTime ?? NaN,
    ),
  );
  figures.next.push(await timeIn(page, '#next', 'changed'));
  await page.click('#prev');
  await page.waitForFunction(() => (globalThis as any).document.querySelector('#hosts tbody tr .name').textContent === 'host-00000');
  figures.sort.push(await timeIn(page, 'th[data-sort="name"]', 'changed')); // name, descending
  figures.search.push(await timeIn(page, 'search:host-0099', 'few', 200));
  await context.close();
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const rows: string[][] = [['run', 'hosts', 'server', 'first render ms', 'interactive ms', 'search ms', 'sort ms', 'next page ms', 'rounds']];
const servers = [{ name: 'this', root: resolve(import.meta.dirname, '..') }, ...(BASELINE ? [{ name: 'baseline', root: resolve(BASELINE) }] : [])];
const ratios: string[] = [];
try {
  for (let run = 1; run <= RUNS; run++) {
    for (const n of SIZES) {
      const directory = await mkdtemp(join(tmpdir(), 'hb-bench-dash-'));
      const writer = new Broker({ directory, logger: createLogger('silent') });
      await coreOf(writer).store.add(records(n));
      await writer.close();
      const running = await Promise.all(
        servers.map(async (s) => ({ ...s, ...(await serve(s.root, directory)), figures: { first: [], ready: [], search: [], sort: [], next: [] } as Figures })),
      );
      try {
        for (const s of running) {
          // One unmeasured load first: the browser's and the server's first-use costs are not the page's.
          const warm = await browser.newContext();
          await (await warm.newPage()).goto(s.url);
          await warm.close();
        }
        for (let i = 0; i < ROUNDS; i++) for (const s of running) await round(s.url, s.figures);
      } finally {
        await Promise.all(running.map((s) => s.stop()));
        await rm(directory, { recursive: true, force: true });
      }
      const m = (xs: number[]) => median(xs).toFixed(0);
      for (const { name, figures: f } of running) {
        rows.push([String(run), n.toLocaleString('en'), name, m(f.first), m(f.ready), m(f.search), m(f.sort), m(f.next), String(ROUNDS)]);
      }
      if (running.length === 2)
        ratios.push(`run ${run}, ${n.toLocaleString('en')} hosts: ${(median(running[0]!.figures.first) / median(running[1]!.figures.first)).toFixed(2)}`);
    }
  }
} finally {
  await browser.close();
}
console.log(`dashboard (hostbroker serve) in headless ${browser.version()} (load ${load()}):`);
console.log(table(rows));
if (ratios.length) console.log(`first render, this / baseline:\n  ${ratios.join('\n  ')}`);
