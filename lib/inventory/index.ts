/**
 * The inventory: the store seam (`store.ts`) and the file store, its embedded default.
 * @module
 */
export * from './store.js';
export { FileInventoryStore, Inventory, INVENTORY_FILE } from './file.js';
export { validateRecord } from './operations.js';
export type { InventoryOptions } from './file.js';
