/**
 * `broker.watch()`: the store's change callbacks as an async iterator, for live views (the
 * dashboard, `hostbroker inventory --watch`). Changes are queued between reads, so a slow reader
 * loses none; the iterator ends on `break`, on `signal`, or when the Broker closes.
 * @module
 */
import { InventoryError } from '../errors.js';
import type { InventoryChange } from '../inventory/store.js';
import type { BrokerCore } from './core.js';

/** Options of `broker.watch()`. */
export interface WatchOptions {
  /** Ends the iteration when aborted. */
  signal?: AbortSignal;
}

/** Changes made by anyone to the inventory, from the moment this is called. */
export function watch(core: BrokerCore, options: WatchOptions = {}): AsyncIterableIterator<InventoryChange> {
  const { store } = core;
  if (!store.watch) {
    throw new InventoryError(`the ${store.kind} inventory store (${store.location}) cannot be watched; use the file or etcd store for live views.`);
  }
  const queue: InventoryChange[] = [];
  let wake: (() => void) | undefined;
  let done = false;
  const stop = store.watch((change) => {
    queue.push(change);
    wake?.();
  });
  const finish = (): void => {
    if (done) return;
    done = true;
    stop();
    options.signal?.removeEventListener('abort', finish);
    core.watchers.delete(finish);
    wake?.();
  };
  options.signal?.addEventListener('abort', finish, { once: true });
  if (options.signal?.aborted) finish();
  core.watchers.add(finish);

  const iterator: AsyncIterableIterator<InventoryChange> = {
    async next(): Promise<IteratorResult<InventoryChange>> {
      while (!queue.length && !done) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      const change = queue.shift();
      return change ? { value: change, done: false } : { value: undefined, done: true };
    },
    async return(): Promise<IteratorResult<InventoryChange>> {
      finish();
      queue.length = 0;
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };
  return iterator;
}
