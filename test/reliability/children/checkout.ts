/**
 * One trial of the crash test: checks `count` hosts out of a provider and holds them, printing
 * `start` before the checkout and `done` after; the parent SIGKILLs it at a random moment.
 * argv: <broker dir> <count> <request JSON>.
 */
import { Broker } from '../../../lib/broker/index.js';
import type { CheckoutRequest } from '../../../lib/broker/index.js';

const [dir, count, request] = process.argv.slice(2);
const broker = new Broker({ directory: dir!, settings: { logLevel: 'silent' } });
await broker.providers(); // load what can be loaded before the clock starts
process.stdout.write('start\n');
await broker.checkout({ ...(JSON.parse(request!) as CheckoutRequest), count: Number(count) } as CheckoutRequest & { count: number });
process.stdout.write('done\n');
setInterval(() => undefined, 1 << 30);
