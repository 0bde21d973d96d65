/**
 * `npm run bench:team`: the inventory under a team's load. 1, 4 and 16 workers (each its own
 * Broker and store instance, in this process) check `static` machines out and in again as fast
 * as they can for BENCH_SECONDS (default 5) each, on the file store (one broker directory) and on
 * the etcd store (a 3-node cluster on 127.0.0.1 started here: Debian's /usr/bin/etcd). Without
 * SSH (waitForSsh: false; static release is a no-op), so the figures are the inventory's own:
 * reservations per second, and p50/p99 of checkout and of checkin. One table, etcd/file ratios.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../lib/broker/index.js';
import { startEtcd } from '../test/helpers/etcd.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WORKERS = [1, 4, 16];
/** More machines than workers, so workers race for the same first free ones. */
const MACHINES = Array.from({ length: 24 }, (_, i) => ({ name: `lab${i + 1}`, hostname: `10.99.0.${i + 1}`, username: 'root' }));

interface Result {
  store: string;
  workers: number;
  cycles: number;
  perSecond: number;
  checkout: { p50: number; p99: number };
  checkin: { p50: number; p99: number };
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

async function measure(store: string, workers: number, settings: Record<string, unknown>, directory: string): Promise<Result> {
  const brokers = Array.from({ length: workers }, () => new Broker({ directory, settings: { ...settings, static: { hosts: MACHINES }, logLevel: 'silent' } }));
  const checkouts: number[] = [];
  const checkins: number[] = [];
  // One warm-up cycle each: connections, leases and lazy imports are not what is measured.
  for (const b of brokers) await (await b.checkout({ provider: 'static', waitForSsh: false })).checkin();
  const end = Date.now() + SECONDS * 1000;
  const started = performance.now();
  await Promise.all(
    brokers.map(async (broker) => {
      while (Date.now() < end) {
        const t0 = performance.now();
        const host = await broker.checkout({ provider: 'static', waitForSsh: false });
        const t1 = performance.now();
        await host.checkin();
        checkouts.push(t1 - t0);
        checkins.push(performance.now() - t1);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  await Promise.all(brokers.map((b) => b.close()));
  const co = checkouts.sort((a, b) => a - b);
  const ci = checkins.sort((a, b) => a - b);
  return {
    store,
    workers,
    cycles: co.length,
    perSecond: co.length / elapsed,
    checkout: { p50: percentile(co, 50), p99: percentile(co, 99) },
    checkin: { p50: percentile(ci, 50), p99: percentile(ci, 99) },
  };
}

const cluster = await startEtcd();
const results: Result[] = [];
try {
  for (const workers of WORKERS) {
    const fileDir = await mkdtemp(join(tmpdir(), 'hb-bench-team-'));
    results.push(await measure('file', workers, {}, fileDir));
    await rm(fileDir, { recursive: true, force: true });
    const etcdDir = await mkdtemp(join(tmpdir(), 'hb-bench-team-'));
    const inventory = { store: 'etcd', endpoints: cluster.endpoints, prefix: `bench-${workers}-${Date.now()}/` };
    results.push(await measure('etcd', workers, { inventory }, etcdDir));
    await rm(etcdDir, { recursive: true, force: true });
  }
} finally {
  await cluster.stop();
}

const ms = (n: number) => n.toFixed(1);
const rows = WORKERS.map((w) => {
  const f = results.find((r) => r.store === 'file' && r.workers === w)!;
  const e = results.find((r) => r.store === 'etcd' && r.workers === w)!;
  return [
    String(w),
    f.perSecond.toFixed(0),
    e.perSecond.toFixed(0),
    `${(e.perSecond / f.perSecond).toFixed(2)}x`,
    `${ms(f.checkout.p50)}/${ms(f.checkout.p99)}`,
    `${ms(e.checkout.p50)}/${ms(e.checkout.p99)}`,
    `${ms(f.checkin.p50)}/${ms(f.checkin.p99)}`,
    `${ms(e.checkin.p50)}/${ms(e.checkin.p99)}`,
  ];
});
const headers = [
  'workers',
  'file res/s',
  'etcd res/s',
  'etcd/file',
  'file checkout p50/p99 ms',
  'etcd checkout p50/p99 ms',
  'file checkin p50/p99 ms',
  'etcd checkin p50/p99 ms',
];
const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
console.log(`inventory under load: ${SECONDS} s per run, static machines without SSH, 3-node etcd on 127.0.0.1`);
console.log(line(headers));
for (const r of rows) console.log(line(r));
const single = results.find((r) => r.store === 'file' && r.workers === 1)!;
const sixteen = results.find((r) => r.store === 'etcd' && r.workers === 16)!;
console.log(
  `etcd with 16 workers: ${sixteen.perSecond.toFixed(0)} reservations/s against ${single.perSecond.toFixed(0)}/s for one worker on the file store (${(sixteen.perSecond / single.perSecond).toFixed(2)}x); p99 checkout ${ms(sixteen.checkout.p99)} ms`,
);
