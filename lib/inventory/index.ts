/**
 * The inventory: the store seam (`store.ts`), the file store (the embedded default) and the etcd
 * store (a team's shared inventory, docs/team.md).
 * @module
 */
export * from './store.js';
export { FileInventoryStore, Inventory, INVENTORY_FILE } from './file.js';
export { EtcdInventoryStore } from './etcd.js';
export { EtcdUnavailableError } from './etcd-client.js';
export { validateRecord } from './operations.js';
export type { InventoryOptions } from './file.js';

import type { Settings } from '../settings.js';
import { EtcdInventoryStore } from './etcd.js';
import { FileInventoryStore } from './file.js';
import type { InventoryStore } from './store.js';

/**
 * The store settings choose for a broker directory: the file store (the embedded default), or
 * the etcd store of `inventory.store: etcd` (which connects on first use; never a fallback).
 */
export function openInventoryStore(directory: string, settings: Settings): InventoryStore {
  if (settings.inventory?.store === 'etcd') return new EtcdInventoryStore(settings.inventory);
  return new FileInventoryStore(directory);
}
