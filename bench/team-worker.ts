/**
 * One worker of bench/team.ts: its own process, Broker and store instance on the shared
 * inventory. The store the Broker uses is wrapped so that each checkout and checkin also reports
 * the time spent awaiting store calls (the latency the store adds) and how many calls, and on
 * etcd how many requests to the cluster, it made. Talks to the parent over the fork channel:
 * `ready` after a warm-up cycle, then `go` (an end time), then `done` with its samples.
 */
import { Broker } from '../lib/broker/index.js';
import { openInventoryStore } from '../lib/inventory/index.js';
import type { InventoryStore } from '../lib/inventory/store.js';
import { builtinProviders } from '../lib/registry.js';
import { loadSettings } from '../lib/settings.js';

export interface WorkerSamples {
  /** Wall time of each checkout and checkin, ms. */
  checkout: number[];
  checkin: number[];
  /** Time of each spent awaiting the store, ms. */
  checkoutStore: number[];
  checkinStore: number[];
  /** Store calls and cluster requests (etcd) over all measured cycles. */
  calls: number;
  requests: number;
  /** Store calls by method name, over all measured cycles. */
  byMethod: Record<string, number>;
  /** CPU time this process used over the measured cycles, ms. */
  cpuMs: number;
  /** When the last cycle ended (epoch ms). */
  finished: number;
}

// tsx turns source-mapped stack traces on, and gRPC takes a stack for each call: that parsing is
// the bench's cost, not the library's (plain node on the built package does not pay it).
process.setSourceMapsEnabled(false);

const [directory = '', settingsJson = '{}'] = process.argv.slice(2);
const settings = JSON.parse(settingsJson) as Record<string, unknown>;
const inner = openInventoryStore(directory, loadSettings(directory, { overrides: settings, providerNames: builtinProviders.map((p) => p.name) }));

let storeMs = 0;
let calls = 0;
let requests = 0;
let byMethod: Record<string, number> = {};
// Every request the etcd store makes to the cluster goes through read() or txn().
for (const method of ['read', 'txn'] as const) {
  const own = inner as unknown as Record<string, ((...a: unknown[]) => Promise<unknown>) | undefined>;
  const original = own[method];
  if (typeof original !== 'function') continue;
  own[method] = (...args: unknown[]) => {
    requests++;
    return original.apply(inner, args);
  };
}
/** The store as the Broker sees it, each call timed (calls in one checkout never overlap here). */
const timed = new Proxy(inner, {
  get(target, prop, receiver) {
    const value = Reflect.get(target, prop, receiver) as unknown;
    if (typeof value !== 'function' || prop === 'close' || prop === 'watch') return value;
    return async (...args: unknown[]) => {
      calls++;
      byMethod[String(prop)] = (byMethod[String(prop)] ?? 0) + 1;
      const t0 = performance.now();
      try {
        return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      } finally {
        storeMs += performance.now() - t0;
      }
    };
  },
}) as InventoryStore;

const broker = new Broker({ directory, store: timed, settings: { ...settings, logLevel: 'silent' } });
const now = (): number => performance.timeOrigin + performance.now();

// Warm-up: the connection, the worker lease and lazy imports are not what is measured.
await (await broker.checkout({ provider: 'static', waitForSsh: false })).checkin();
process.send!({ ev: 'ready' });

process.once('message', async (message: { end: number }) => {
  const s: WorkerSamples = { checkout: [], checkin: [], checkoutStore: [], checkinStore: [], calls: 0, requests: 0, byMethod: {}, cpuMs: 0, finished: 0 };
  const cpu = process.cpuUsage();
  calls = 0;
  byMethod = {};
  requests = 0;
  while (now() < message.end) {
    storeMs = 0;
    const t0 = performance.now();
    const host = await broker.checkout({ provider: 'static', waitForSsh: false });
    const t1 = performance.now();
    s.checkoutStore.push(storeMs);
    storeMs = 0;
    await host.checkin();
    s.checkin.push(performance.now() - t1);
    s.checkout.push(t1 - t0);
    s.checkinStore.push(storeMs);
  }
  s.finished = now();
  const used = process.cpuUsage(cpu);
  s.cpuMs = (used.user + used.system) / 1000;
  s.calls = calls;
  s.requests = requests;
  s.byMethod = byMethod;
  await broker.close();
  process.send!({ ev: 'done', samples: s }, () => process.exit(0));
});
