/**
 * A test worker for the reaper tests: checks hosts out the way the fixtures do, keeps one of
 * them, prints `ready <json>` and waits to be killed. argv: <broker dir> <count> <keep: 0|1>.
 */
import { Broker } from '../../../lib/broker/index.js';
import { checkoutForFixture } from '../../../lib/runners/core.js';

const [dir, count, keep] = process.argv.slice(2);
const broker = new Broker({ directory: dir! });
const group = await checkoutForFixture(broker, { provider: 'local', count: Number(count) });
const hosts = [...(group as Iterable<{ id: string }>)];
if (keep === '1') await broker.keep(hosts[0] as never, 'test failed: kept by the worker');
process.stdout.write(`ready ${JSON.stringify(hosts.map((h) => h.id))}\n`);
setInterval(() => undefined, 1 << 30);
