import { FileInventoryStore } from '../../lib/inventory/index.js';

/** The inventory of a Broker's directory, read as another process would: a store of its own. */
export function inventoryOf(broker: { directory: string }): FileInventoryStore {
  return new FileInventoryStore(broker.directory);
}
