/**
 * The inventory: the store seam (`store.ts`), the file store (the embedded default) and the etcd
 * store (a team's shared inventory, docs/team.md).
 * @module
 */
export * from './store.js';
export { FileInventoryStore, Inventory, INVENTORY_FILE } from './file.js';
export { EtcdInventoryStore } from './etcd.js';
export { EtcdUnavailableError } from './etcd-error.js';
export { validateRecord } from './operations.js';
export type { InventoryOptions } from './file.js';
export { openInventoryStore } from './open.js';
