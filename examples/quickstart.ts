/**
 * hostbroker in one minute, on the embedded `local` provider (nothing to install):
 * three hosts checked out at once, commands run on them, a file moved from one host to another,
 * the inventory printed, and everything checked in again by `await using`.
 *
 * Run it with `npm run demo`. Set BROKER_DIRECTORY to keep the inventory somewhere you choose.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker, inventoryTable } from 'hostbroker';

const directory = process.env.BROKER_DIRECTORY ?? mkdtempSync(join(tmpdir(), 'hostbroker-demo-'));
console.log(`broker directory: ${directory}\n`);

await using broker = new Broker({ directory });

// Three hosts, provisioned concurrently. Each is a fresh home directory behind its own SSH server.
const started = Date.now();
await using hosts = await broker.checkout({ provider: 'local', name: 'demo', count: 3 });
console.log(`checked out ${hosts.length} hosts in ${Date.now() - started} ms\n`);

// Run a command on every host at once.
for (const [i, r] of (await hosts.execute('echo "$HOSTNAME in $PWD"')).entries()) {
  console.log(`${hosts[i]!.name}: status ${r.status}, ${r.stdout.trim()}`);
}

// Write a file on the first host, copy it straight to the second, and read it there.
const [first, second] = hosts;
await first!.session.write(`made on ${first!.name}\n`, 'outbox/greeting.txt');
await first!.session.copyTo(second!, 'outbox/greeting.txt', 'inbox/greeting.txt');
const moved = await second!.execute('cat inbox/greeting.txt && wc -c < inbox/greeting.txt');
console.log(`\n${second!.name} received:\n${moved.stdout}`);

// Failures come back as a status, not an exception.
const failed = await first!.execute('ls /no/such/place');
console.log(`a failing command: status ${failed.status}, stderr "${failed.stderr.trim()}"\n`);

// The inventory, as `hostbroker inventory` shows it.
console.log(inventoryTable(await broker.inventory(), false));

// Leaving this scope checks the hosts in (teardown, then release), even after an error.
