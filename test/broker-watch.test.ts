import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Broker } from '../lib/broker/index.js';
import type { InventoryChange } from '../lib/inventory/store.js';
import { createLogger } from '../lib/logger.js';

const quiet = createLogger('silent');

/** Reads changes until `until` says stop (or the iterator ends), leaving the iterator open. */
async function collect(changes: AsyncIterator<InventoryChange>, until: (seen: InventoryChange[]) => boolean): Promise<InventoryChange[]> {
  const seen: InventoryChange[] = [];
  for (let next = await changes.next(); !next.done; next = await changes.next()) {
    seen.push(next.value);
    if (until(seen)) break;
  }
  return seen;
}

describe('broker.watch()', () => {
  it("reports another Broker's checkout and checkin in the same directory, and stops when returned", async () => {
    const directory = await mkdtemp(join(tmpdir(), 'hb-watch-'));
    await using watcher = new Broker({ directory, logger: quiet });
    await using worker = new Broker({ directory, logger: quiet });
    const changes = watcher.watch();
    const host = await worker.checkout({ provider: 'local' });
    const upToReady = await collect(changes, (seen) => seen.some((c) => c.kind === 'host' && c.id === host.id && c.record?.state === 'ready'));
    expect(upToReady.at(-1)).toMatchObject({ kind: 'host', id: host.id, record: { state: 'ready', provider: 'local' } });

    await worker.checkin(host);
    const gone = await collect(changes, (seen) => seen.some((c) => c.kind === 'host' && c.id === host.id && c.record === undefined));
    expect(gone.at(-1)).toEqual({ kind: 'host', id: host.id, record: undefined });
    // What `break` in a `for await` calls: the watch stops for good.
    await changes.return?.();
    expect(await changes.next()).toEqual({ value: undefined, done: true });
  });

  it('ends when its signal aborts and when the Broker closes', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'hb-watch-'));
    const broker = new Broker({ directory, logger: quiet });
    const controller = new AbortController();
    const bySignal = broker.watch({ signal: controller.signal });
    const byClose = broker.watch();
    const pendingSignal = bySignal.next();
    const pendingClose = byClose.next();
    controller.abort();
    expect(await pendingSignal).toEqual({ value: undefined, done: true });
    await broker.close();
    expect(await pendingClose).toEqual({ value: undefined, done: true });
  });
});
