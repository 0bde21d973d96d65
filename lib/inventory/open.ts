/**
 * Opening the store settings choose. The etcd store's code (five modules) loads on its first
 * call, so a Broker on the file store, and `import('hostbroker')`, never load it.
 * @module
 */
import type { InventorySettings } from './settings.js';
import type { Settings } from '../settings.js';
import type { EtcdInventoryStore } from './etcd.js';
import { FileInventoryStore } from './file.js';
import type { InventoryChange, InventoryStore } from './store.js';

/**
 * The store settings choose for a broker directory: the file store (the embedded default), or
 * the etcd store of `inventory.store: etcd` (which connects on first use; never a fallback).
 */
export function openInventoryStore(directory: string, settings: Settings): InventoryStore {
  if (settings.inventory?.store === 'etcd') return lazyEtcdStore(settings.inventory);
  return new FileInventoryStore(directory);
}

/** An etcd store whose module loads on the first call; it behaves as the store itself. */
function lazyEtcdStore(settings: InventorySettings): InventoryStore {
  let store: Promise<EtcdInventoryStore> | undefined;
  const load = (): Promise<EtcdInventoryStore> => (store ??= import('./etcd.js').then((m) => new m.EtcdInventoryStore(settings)));
  return {
    kind: 'etcd',
    location: `etcd ${settings.endpoints.join(',')} prefix ${settings.prefix}`,
    list: async () => (await load()).list(),
    get: async (id) => (await load()).get(id),
    snapshot: async () => (await load()).snapshot(),
    has: async (id) => (await load()).has(id),
    add: async (records) => (await load()).add(records),
    patch: async (id, change, when) => (await load()).patch(id, change, when),
    remove: async (ids, when) => (await load()).remove(ids, when),
    reserve: async (recordId, pool, candidates) => (await load()).reserve(recordId, pool, candidates),
    reservations: async (pool) => (await load()).reservations(pool),
    putDeployment: async (deployment) => (await load()).putDeployment(deployment),
    removeDeployment: async (id) => (await load()).removeDeployment(id),
    workers: async () => (await load()).workers(),
    watch(onChange: (change: InventoryChange) => void): () => void {
      let stop: (() => void) | undefined;
      let stopped = false;
      void load().then((s) => {
        if (!stopped) stop = s.watch(onChange);
      });
      return () => {
        stopped = true;
        stop?.();
      };
    },
    // Nothing to close when nothing was loaded.
    close: async () => (store ? (await store).close() : undefined),
  };
}
