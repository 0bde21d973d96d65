/**
 * One process of bench/team.ts, holding one or more workers: each its own Broker and store
 * instance on the shared inventory. The store the Broker uses is wrapped so that each checkout and checkin also reports
 * the time spent awaiting store calls (the latency the store adds) and how many calls, and on
 * etcd how many requests to the cluster, it made. Talks to the parent over the fork channel:
 * `ready` after a warm-up cycle of each worker, then `go` (an end time), then `done` with its samples.
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

const [directory = '', settingsJson = '{}', brokersArg = '1'] = process.argv.slice(2);
const settings = JSON.parse(settingsJson) as Record<string, unknown>;
const loaded = loadSettings(directory, { overrides: settings, providerNames: builtinProviders.map((p) => p.name) });
const now = (): number => performance.timeOrigin + performance.now();

/** One worker: its own store instance (on etcd its own client and lease) and Broker, every store call timed. */
async function worker() {
  // The etcd store itself, not openInventoryStore's lazy stand-in, so that its requests can be counted.
  const inner: InventoryStore =
    loaded.inventory.store === 'etcd'
      ? new (await import('../lib/inventory/etcd.js')).EtcdInventoryStore(loaded.inventory)
      : openInventoryStore(directory, loaded);
  const count = { storeMs: 0, calls: 0, requests: 0, byMethod: {} as Record<string, number> };
  // Every request the etcd store makes to the cluster goes through read() or txn().
  for (const method of ['read', 'txn'] as const) {
    const own = inner as unknown as Record<string, ((...a: unknown[]) => Promise<unknown>) | undefined>;
    const original = own[method];
    if (typeof original !== 'function') continue;
    own[method] = (...args: unknown[]) => {
      count.requests++;
      return original.apply(inner, args);
    };
  }
  /** The store as the Broker sees it (calls in one checkout never overlap here). */
  const timed = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || prop === 'close' || prop === 'watch') return value;
      return async (...args: unknown[]) => {
        count.calls++;
        count.byMethod[String(prop)] = (count.byMethod[String(prop)] ?? 0) + 1;
        const t0 = performance.now();
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } finally {
          count.storeMs += performance.now() - t0;
        }
      };
    },
  }) as InventoryStore;
  const broker = new Broker({ directory, store: timed, settings: { ...settings, logLevel: 'silent' } });
  // Warm-up: the connection, the worker lease and lazy imports are not what is measured.
  await (await broker.checkout({ provider: 'static', waitForSsh: false })).checkin();

  const run = async (end: number, s: WorkerSamples): Promise<void> => {
    Object.assign(count, { calls: 0, requests: 0, byMethod: {} });
    while (now() < end) {
      count.storeMs = 0;
      const t0 = performance.now();
      const host = await broker.checkout({ provider: 'static', waitForSsh: false });
      const t1 = performance.now();
      s.checkoutStore.push(count.storeMs);
      count.storeMs = 0;
      await host.checkin();
      s.checkin.push(performance.now() - t1);
      s.checkout.push(t1 - t0);
      s.checkinStore.push(count.storeMs);
    }
    s.calls += count.calls;
    s.requests += count.requests;
    for (const [m, n] of Object.entries(count.byMethod)) s.byMethod[m] = (s.byMethod[m] ?? 0) + n;
  };
  return { run, close: () => broker.close() };
}

// Several workers in one process stand for several jobs on one CI machine sharing its cores.
const workers = await Promise.all(Array.from({ length: Number(brokersArg) }, () => worker()));
process.send!({ ev: 'ready' });

process.once('message', async (message: { end: number }) => {
  const s: WorkerSamples = { checkout: [], checkin: [], checkoutStore: [], checkinStore: [], calls: 0, requests: 0, byMethod: {}, cpuMs: 0, finished: 0 };
  const cpu = process.cpuUsage();
  await Promise.all(workers.map((w) => w.run(message.end, s)));
  s.finished = now();
  const used = process.cpuUsage(cpu);
  s.cpuMs = (used.user + used.system) / 1000;
  // Closing (the lease revoked) is not part of the measured cycles.
  await Promise.all(workers.map((w) => w.close()));
  process.send!({ ev: 'done', samples: s }, () => process.exit(0));
});
