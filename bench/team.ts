/**
 * `npm run bench:team`: the inventory under a team's load. 1, 4 and 16 workers, each its own
 * process (bench/team-worker.ts) with its own Broker and store instance, check `static` machines
 * out and in again as fast as they can for BENCH_SECONDS (default 5) each, on the file store (one
 * broker directory) and on the etcd store (a 3-node cluster on 127.0.0.1 started here: Debian's
 * /usr/bin/etcd). Without SSH (waitForSsh: false; static release is a no-op), so the figures are
 * the inventory's own: reservations per second, p50/p99 of checkout and checkin, and of the part
 * of each spent awaiting the store (the latency the store adds; the rest is the worker's own CPU
 * time and, with more processes than cores, waiting for a core). `--json` prints the results;
 * BENCH_WORKERS=1,4 runs only those; BENCH_PER_PROCESS=4 puts 4 workers in each process;
 * BENCH_PROF=<dir> has each process write a CPU profile there.
 */
import { fork } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEtcd } from '../test/helpers/etcd.js';
import type { WorkerSamples } from './team-worker.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
/** BENCH_WORKERS=1,4 runs only some of them; the summary line needs 1 and 16. */
const WORKERS = (process.env.BENCH_WORKERS ?? '1,4,16').split(',').map(Number);
const JSON_OUT = process.argv.includes('--json');
/**
 * Workers per process (BENCH_PER_PROCESS, default 1): 16 processes on a 2-core machine wait for a
 * core more than for the store; 4 per process stands for 4 jobs on each of 4 CI machines.
 */
const PER_PROCESS = Math.max(1, Number(process.env.BENCH_PER_PROCESS ?? 1));
const WORKER = fileURLToPath(new URL('./team-worker.ts', import.meta.url));
/** More machines than workers, so workers race for the same first free ones. */
const MACHINES = Array.from({ length: 24 }, (_, i) => ({ name: `lab${i + 1}`, hostname: `10.99.0.${i + 1}`, username: 'root' }));

interface Spread {
  p50: number;
  p99: number;
}
interface Result {
  store: string;
  workers: number;
  cycles: number;
  perSecond: number;
  checkout: Spread;
  checkin: Spread;
  /** Time awaiting the store within each checkout / checkin. */
  checkoutStore: Spread;
  checkinStore: Spread;
  /** Store calls and cluster requests per checkout+checkin cycle. */
  callsPerCycle: number;
  requestsPerCycle: number;
  /** CPU per cycle, ms: the worker processes, and the etcd members (0 on the file store). */
  workerCpuPerCycle: number;
  etcdCpuPerCycle: number;
  /** Store calls per cycle by method. */
  callsByMethod: Record<string, number>;
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
const spread = (values: number[]): Spread => {
  const sorted = values.sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
};

async function measure(store: string, workers: number, settings: Record<string, unknown>, directory: string): Promise<Result> {
  const processes = Math.ceil(workers / PER_PROCESS);
  const children = Array.from({ length: processes }, (_, i) =>
    fork(WORKER, [directory, JSON.stringify({ ...settings, static: { hosts: MACHINES } }), String(Math.min(PER_PROCESS, workers - i * PER_PROCESS))], {
      execArgv: ['--import', 'tsx', ...(process.env.BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : [])],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
  const exited = children.map((c) => new Promise<void>((resolve) => c.once('exit', () => resolve())));
  const message = (c: (typeof children)[number], ev: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const onMessage = (m: Record<string, unknown>) => {
        if (m.ev !== ev) return;
        c.off('message', onMessage);
        resolve(m);
      };
      c.on('message', onMessage);
      c.once('exit', (code) => reject(new Error(`a ${store} bench worker exited (${code}) before ${ev}`)));
    });
  try {
    await Promise.all(children.map((c) => message(c, 'ready')));
    const etcdCpu = store === 'etcd' ? await etcdCpuMs() : 0;
    const start = Date.now();
    const done = children.map((c) => message(c, 'done'));
    for (const c of children) c.send({ end: start + SECONDS * 1000 });
    const samples = (await Promise.all(done)).map((m) => m.samples as WorkerSamples);
    const etcdUsed = store === 'etcd' ? (await etcdCpuMs()) - etcdCpu : 0;
    await Promise.all(exited);
    const all = (pick: (s: WorkerSamples) => number[]) => samples.flatMap(pick);
    const cycles = all((s) => s.checkout).length;
    const elapsed = (Math.max(...samples.map((s) => s.finished)) - start) / 1000;
    const total = (pick: (s: WorkerSamples) => number) => samples.reduce((n, s) => n + pick(s), 0);
    return {
      store,
      workers,
      cycles,
      perSecond: cycles / elapsed,
      checkout: spread(all((s) => s.checkout)),
      checkin: spread(all((s) => s.checkin)),
      checkoutStore: spread(all((s) => s.checkoutStore)),
      checkinStore: spread(all((s) => s.checkinStore)),
      callsPerCycle: total((s) => s.calls) / cycles,
      requestsPerCycle: total((s) => s.requests) / cycles,
      workerCpuPerCycle: total((s) => s.cpuMs) / cycles,
      etcdCpuPerCycle: etcdUsed / cycles,
      callsByMethod: Object.fromEntries(
        [...new Set(samples.flatMap((s) => Object.keys(s.byMethod)))].map((m) => [m, total((s) => s.byMethod[m] ?? 0) / cycles]),
      ),
    };
  } finally {
    for (const c of children) if (c.exitCode === null && c.pid) process.kill(c.pid);
  }
}

const load = loadavg()
  .map((l) => l.toFixed(1))
  .join(' ');
const cluster = await startEtcd();
/** CPU the etcd members used so far, ms (utime + stime in /proc, 100 ticks a second). */
async function etcdCpuMs(): Promise<number> {
  let ticks = 0;
  for (const n of cluster.nodes) {
    const stat = await readFile(`/proc/${n.process?.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks * 10;
}
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

const single = results.find((r) => r.store === 'file' && r.workers === 1);
const sixteen = results.find((r) => r.store === 'etcd' && r.workers === 16);
if (JSON_OUT) {
  console.log(
    JSON.stringify({ seconds: SECONDS, workersPerProcess: PER_PROCESS, cpus: cpus().length, loadBefore: load, loadAfter: loadavg(), results }, null, 2),
  );
} else {
  const ms = (s: Spread) => `${s.p50.toFixed(1)}/${s.p99.toFixed(1)}`;
  const rows = WORKERS.map((w) => {
    const f = results.find((r) => r.store === 'file' && r.workers === w)!;
    const e = results.find((r) => r.store === 'etcd' && r.workers === w)!;
    return [
      String(w),
      f.perSecond.toFixed(0),
      e.perSecond.toFixed(0),
      `${(e.perSecond / f.perSecond).toFixed(2)}x`,
      ms(f.checkout),
      ms(e.checkout),
      ms(f.checkoutStore),
      ms(e.checkoutStore),
      ms(f.checkin),
      ms(e.checkin),
      `${f.callsPerCycle.toFixed(1)}/${e.callsPerCycle.toFixed(1)}`,
      e.requestsPerCycle.toFixed(1),
      `${f.workerCpuPerCycle.toFixed(1)}/${e.workerCpuPerCycle.toFixed(1)}+${e.etcdCpuPerCycle.toFixed(1)}`,
    ];
  });
  const headers = [
    'workers',
    'file res/s',
    'etcd res/s',
    'etcd/file',
    'file checkout',
    'etcd checkout',
    'file co store',
    'etcd co store',
    'file checkin',
    'etcd checkin',
    'store calls f/e',
    'etcd reqs',
    'cpu ms f/e+etcd',
  ];
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  console.log(
    `inventory under load: ${SECONDS} s per run, ${PER_PROCESS === 1 ? 'one process per worker' : `${PER_PROCESS} workers per process`} on ${cpus().length} CPU(s), static machines without SSH, 3-node etcd on 127.0.0.1`,
  );
  console.log(
    'latencies p50/p99 ms; "co store": time of a checkout spent awaiting the store; calls, etcd requests and CPU (workers + etcd members) per checkout+checkin',
  );
  console.log(
    `load average before ${load}, after ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  console.log(line(headers));
  for (const r of rows) console.log(line(r));
  if (single && sixteen)
    console.log(
      `etcd with 16 workers: ${sixteen.perSecond.toFixed(0)} reservations/s against ${single.perSecond.toFixed(0)}/s for one worker on the file store (${(sixteen.perSecond / single.perSecond).toFixed(2)}x); ` +
        `p99 checkout ${sixteen.checkout.p99.toFixed(1)} ms, of it awaiting the store p99 ${sixteen.checkoutStore.p99.toFixed(1)} ms (target < 50)`,
    );
}
