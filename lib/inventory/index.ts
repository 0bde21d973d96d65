/**
 * The inventory: the store seam (`store.ts`) and the file store, its embedded default.
 * @module
 */
export * from './store.js';
export { FileInventoryStore, Inventory, INVENTORY_FILE } from './file.js';
export { validateRecord } from './operations.js';
export type { InventoryOptions } from './file.js';

import type { Settings } from '../settings.js';
import { FileInventoryStore } from './file.js';
import type { InventoryStore } from './store.js';

/** The store settings choose for a broker directory: the file store (the embedded default). */
export function openInventoryStore(directory: string, _settings: Settings): InventoryStore {
  return new FileInventoryStore(directory);
}
