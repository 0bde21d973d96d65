/**
 * A separate process for the warm-reuse tests: checks out `{ provider: 'local', reuse: true }`
 * from the broker directory in argv[2], prints `claimed <id>`, waits until the file argv[3]
 * exists (when given), then checks the host in (back to the pool) and prints `done`.
 */
import { existsSync } from 'node:fs';
import { Broker } from '../../lib/broker/index.js';

const [directory, barrier] = process.argv.slice(2) as [string, string | undefined];
const broker = new Broker({ directory });
const host = await broker.checkout({ provider: 'local', reuse: true });
// The host answers: it is usable, not just a record.
const r = await host.execute('echo $HOME', { check: true });
process.stdout.write(`claimed ${host.id} ${r.stdout.trim()}\n`);
while (barrier && !existsSync(barrier)) await new Promise((resolve) => setTimeout(resolve, 50));
await host.checkin();
await broker.close();
process.stdout.write('done\n');
