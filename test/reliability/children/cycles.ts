/**
 * One process of the concurrency test: `cycles` checkout/checkin cycles on a shared broker
 * directory, logging every record id it created and released (one JSON line each) so the parent
 * can prove no record was lost or duplicated. argv: <broker dir> <resource folder> <cycles> <log>.
 */
import { appendFileSync } from 'node:fs';
import { Broker, type CheckoutRequest } from '../../../lib/broker/index.js';
import type { Host } from '../../../hosts/host.js';
import { memoryProvider } from './memory-provider.js';

const [dir, folder, cycles, log] = process.argv.slice(2);
const broker = new Broker({ directory: dir!, providers: [memoryProvider(folder!)], settings: { logLevel: 'silent' } });
const write = (event: Record<string, unknown>): void => appendFileSync(log!, `${JSON.stringify({ pid: process.pid, ...event })}\n`);

for (let i = 0; i < Number(cycles); i++) {
  // Some cycles take two hosts, so multi-record intent writes race too.
  const count = i % 5 === 0 ? 2 : undefined;
  // `memory` is registered at run time, so its requests are not in the static ProviderRequest union.
  const hosts: Host[] = count
    ? [...(await broker.checkout({ provider: 'memory', count } as unknown as CheckoutRequest & { count: number }))]
    : [await broker.checkout({ provider: 'memory' } as unknown as CheckoutRequest & { count?: undefined })];
  for (const h of hosts) write({ event: 'created', id: h.id });
  const seen = new Set((await broker.inventory()).map((r) => r.id));
  for (const h of hosts) if (!seen.has(h.id)) write({ event: 'missing', id: h.id });
  await broker.checkin(hosts);
  for (const h of hosts) write({ event: 'released', id: h.id });
}
write({ event: 'done' });
