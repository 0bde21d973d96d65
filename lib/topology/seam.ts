/**
 * What topologies need from the Broker, and nothing more: so `lib/topology/` never imports the
 * Broker (no import cycle), and a deployment can be rebuilt in any process from the store.
 * @module
 */
import type { Host } from '../../hosts/host.js';
import type { InventoryStore } from '../inventory/store.js';
import type { Logger } from '../logger.js';
import type { AnyProviderDefinition } from '../provider.js';
import type { HostRecord } from '../records.js';
import type { Settings } from '../settings.js';

/** The Broker as a topology sees it. */
export interface TopologyBroker<H extends Host = Host> {
  readonly settings: Settings;
  readonly directory: string;
  readonly owner: string;
  readonly logger: Logger;
  readonly store: InventoryStore;
  providerNames(): string[];
  definition(provider: string): AnyProviderDefinition;
  /** Checks out one host (a request as `broker.checkout` takes it, without `count`). */
  checkout(request: Record<string, unknown>): Promise<H>;
  checkin(target: readonly (H | HostRecord)[]): Promise<void>;
  reconstruct(record: HostRecord): H;
}
