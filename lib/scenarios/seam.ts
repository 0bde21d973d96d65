/**
 * What scenarios need from the Broker: its public methods and a way to make a Broker for a
 * scenario's own `config`. Declared here so `lib/scenarios/` never imports the Broker (no cycle).
 * @module
 */
import type { Host } from '../../hosts/host.js';
import type { HostGroup } from '../../hosts/host-group.js';
import type { CheckinOptions, CheckoutRequest, ExecuteRequest, ProviderInfo } from '../broker/types.js';
import type { Filter } from '../filter.js';
import type { DeploymentRecord, HostRecord } from '../records.js';
import type { Deployment } from '../topology/deployment.js';
import type { TopologyMetadata, UpOptions } from '../topology/index.js';

/** The Broker as a scenario sees it. */
export interface ScenarioBroker {
  readonly directory: string;
  checkout(request: CheckoutRequest): Promise<Host | HostGroup>;
  checkin(target: readonly (Host | HostRecord)[] | string, options?: CheckinOptions): Promise<void>;
  inventory(options?: { filter?: Filter<HostRecord>; sync?: boolean | string }): Promise<HostRecord[]>;
  deployments(): Promise<DeploymentRecord[]>;
  execute(request: ExecuteRequest): Promise<unknown>;
  up(metadata: string | TopologyMetadata, options?: UpOptions): Promise<Deployment>;
  deployment(key?: string): Promise<Deployment>;
  providers(): ProviderInfo[];
  describeProvider(provider: string, topic?: string, instance?: string): Promise<Record<string, unknown>>;
  reconstruct(record: HostRecord): Host;
  /** A Broker with other settings or directory, for a scenario's `config`; closed after the run. */
  derive(options: { directory?: string; settings?: Record<string, unknown> }): ScenarioBroker & { close(): Promise<void> };
}
