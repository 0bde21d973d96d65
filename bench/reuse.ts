/**
 * `npm run bench:reuse`: a fresh checkout against a warm-reuse checkout (`reuse: true`, a host
 * from the pool), each until the host answers `execute('true')`, for the container provider with
 * the SSH image and for `local`. Medians of BENCH_ROUNDS rounds (default 10), in one run.
 * "warm" reuses the Broker (a test run's worker: the pooled host's SSH connection stays open);
 * "warm, new Broker" opens a new Broker each time (another run on the same directory: a new SSH
 * connection, the inventory read again). Needs scripts/setup-test-env.sh for the containers.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Host } from '../hosts/host.js';
import { Broker } from '../lib/broker/index.js';
import type { CheckoutRequest } from '../lib/broker/types.js';
import { load, median, table, timed } from './lib/stats.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const SSHD_IMAGE = 'localhost/hostbroker-sshd:bookworm';

type One = CheckoutRequest & { count?: undefined };
const cases: Array<{ name: string; request: One }> = [
  { name: 'container (ssh image)', request: { provider: 'container', image: SSHD_IMAGE, ssh: true } as One },
  { name: 'local', request: { provider: 'local' } as One },
];

const fmt = (ms: number): string => `${ms.toFixed(1)} ms`;
const rows: string[][] = [['provider', 'fresh', 'warm (same Broker)', 'ratio', 'warm (new Broker)', 'ratio']];
console.log(`bench:reuse, ${ROUNDS} rounds each, load ${load()}`);

for (const { name, request } of cases) {
  const directory = await mkdtemp(join(tmpdir(), 'hb-bench-reuse-'));
  const settings = { container: { reapGrace: 0 } } as never;
  const broker = new Broker({ directory, settings });
  const fresh: number[] = [];
  const warm: number[] = [];
  const warmNew: number[] = [];
  try {
    for (let i = 0; i < ROUNDS; i++) {
      let host: Host | undefined;
      fresh.push(await timed(async () => await (host = await broker.checkout(request)).execute('true', { check: true })));
      await host!.checkin();
    }
    // One checkout fills the pool; each round takes the host and gives it back.
    await (await broker.checkout({ ...request, reuse: true })).checkin();
    let id: string | undefined;
    for (let i = 0; i < ROUNDS; i++) {
      let host: Host | undefined;
      warm.push(await timed(async () => await (host = await broker.checkout({ ...request, reuse: true })).execute('true', { check: true })));
      if (id && host!.id !== id) throw new Error('warm checkout made a new host instead of reusing the pooled one');
      id = host!.id;
      await host!.checkin();
    }
    for (let i = 0; i < ROUNDS; i++) {
      let other: Broker | undefined;
      let host: Host | undefined;
      warmNew.push(
        await timed(async () => {
          other = new Broker({ directory, settings });
          await (host = await other.checkout({ ...request, reuse: true })).execute('true', { check: true });
        }),
      );
      if (host!.id !== id) throw new Error('warm checkout (new Broker) made a new host instead of reusing the pooled one');
      await host!.checkin();
      await other!.close();
    }
  } finally {
    await broker.emptyPool().catch(() => undefined);
    await broker.checkin({ all: true }).catch(() => undefined);
    await broker.close();
    await rm(directory, { recursive: true, force: true });
  }
  const f = median(fresh);
  const w = median(warm);
  const wn = median(warmNew);
  rows.push([name, fmt(f), fmt(w), `${(f / w).toFixed(1)}x`, fmt(wn), `${(f / wn).toFixed(1)}x`]);
}

console.log(`\ncheckout until \`true\` answers, median of ${ROUNDS}:`);
console.log(table(rows));
console.log(`load after: ${load()}`);
