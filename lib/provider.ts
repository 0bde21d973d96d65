/**
 * The provider contract: the seam every provider plugs into. See `docs/providers.md`.
 *
 * A provider comes in two parts so that importing hostbroker stays cheap:
 * - a {@link ProviderDefinition} (name, zod schemas, docs) that is loaded eagerly and is light
 *   (only zod), so `broker.providers()` and argument validation need no SDK;
 * - a {@link ProviderImplementation} loaded on first use through `load()`, which may import its SDK
 *   lazily (see {@link importOptional}).
 * The Broker does concurrency, intent records, leases and error policy; a provider creates,
 * releases and lists one host at a time.
 * @module
 */
import type { z } from 'zod';
import type { Inventory } from './inventory.js';
import type { Logger } from './logger.js';
import type { Connection, HostRecord, SshConnection } from './records.js';
import type { Settings } from './settings.js';
import type { Transport } from '../hosts/session.js';

/** What a provider is given for every call. */
export interface ProviderContext {
  /** Provider name, e.g. `container`. */
  provider: string;
  /** Name of the settings instance in use. */
  instance: string;
  /** That instance's settings, validated by the definition's `instance` schema when it has one. */
  instanceSettings: Record<string, unknown>;
  /** The whole validated settings. */
  settings: Settings;
  /** The broker directory (settings + inventory). */
  directory: string;
  /** Stable identity of the broker directory; tag resources with it. */
  brokerId: string;
  /** User name recorded as owner. */
  owner: string;
  logger: Logger;
  /** The inventory, for providers that reserve under its lock (e.g. `static`). */
  inventory: Inventory;
  /** Aborted when the operation is given up (timeout, abort policy). */
  signal: AbortSignal;
}

/** One host the Broker asks a provider to create. Its record is already in the inventory. */
export interface CheckoutTarget {
  /** The intent record (state `provisioning`); tag what you create with `record.id`. */
  record: HostRecord;
  /** Position in a multi-host checkout, from 0. */
  index: number;
  /** How many hosts this checkout makes in all. */
  count: number;
}

/** What a provider returns for a host it created (or found, for sync). */
export interface ProvisionedHost {
  /** Address the host is reached at. */
  hostname: string;
  /** Display name; defaults to the record's name. */
  name?: string;
  /** The provider's own id for the resource. */
  providerId?: string;
  /** How to reach it. Secrets are referenced (key path, env var), never included. */
  connection: Connection;
  /** Provider-specific facts kept on the record (no secrets). */
  data?: Record<string, unknown>;
  /** When the lease ends, if the provider decides it. */
  leaseExpires?: string;
}

/** A host a provider reports during `sync`. */
export interface DiscoveredHost extends ProvisionedHost {
  /** The record id found in the resource's tags, when it has one. */
  id?: string;
  owner?: string;
  brokerId?: string;
  createdAt?: string;
  recipe?: HostRecord['recipe'];
}

/** Docs of a provider action that creates no host (`broker.execute`). */
export interface ProviderActionDefinition<S extends z.ZodType = z.ZodType> {
  description: string;
  schema: S;
}

/** The light, eagerly loaded part of a provider. */
export interface ProviderDefinition<
  Args extends z.ZodType = z.ZodType,
  Instance extends z.ZodType = z.ZodType,
> {
  /** Name used in requests and settings, lower-case: `container`, `ec2`. */
  name: string;
  /** One line for `providers()` help. */
  description: string;
  /** Checkout arguments; unknown keys are rejected. */
  args: Args;
  /** Settings of one instance (`<name>.instances.<instance>` in broker_settings.yaml). */
  instance?: Instance;
  /** Actions for `broker.execute`, by name. */
  actions?: Record<string, ProviderActionDefinition>;
  /**
   * Maps one topology host (`broker.up`) to this provider's checkout arguments, using the
   * provider's `provisioning` config (os → image, group → flavor/size, network). Without it,
   * the topology passes `{ name }` plus the host's `args`.
   */
  fromTopology?(host: TopologyHost, provisioning: ProvisioningConfig): Record<string, unknown>;
  /** Loads the implementation (dynamic import). */
  load(): Promise<ProviderImplementation<z.output<Args>>>;
}

/** One host of a topology, as a provider's `fromTopology` sees it. */
export interface TopologyHost {
  name: string;
  role?: string;
  groups: string[];
  os?: string;
  size?: string;
  network?: string;
  domain?: string;
  /** Provider-specific arguments given on the host in the metadata. */
  args: Record<string, unknown>;
}

/** A provider's section of the provisioning config (mrack's provisioning-config.yaml). */
export interface ProvisioningConfig {
  /** os → image (AMI, Glance image, container image, base volume...). */
  images?: Record<string, string>;
  /** group → flavor/instance type/size; `default` when no group matches. */
  flavors?: Record<string, string>;
  /** network name → provider network id/name. */
  networks?: Record<string, string>;
  keypair?: string;
  strategy?: 'abort' | 'retry';
  max_retry?: number;
  [key: string]: unknown;
}

/** Picks the flavor for a topology host: explicit size, then its groups, then `default`. */
export function pickFlavor(host: TopologyHost, config: ProvisioningConfig): string | undefined {
  if (host.size) return config.flavors?.[host.size] ?? host.size;
  for (const g of host.groups) if (config.flavors?.[g]) return config.flavors[g];
  return config.flavors?.default;
}

/** Picks the image for a topology host's `os`. */
export function pickImage(host: TopologyHost, config: ProvisioningConfig): string | undefined {
  return host.os ? (config.images?.[host.os] ?? host.os) : undefined;
}

/** The part of a provider that does the work. */
export interface ProviderImplementation<Args = Record<string, unknown>> {
  /** Creates one host. Throw a ProviderError (retryable where it is) on failure. */
  checkout(args: Args, target: CheckoutTarget, ctx: ProviderContext): Promise<ProvisionedHost>;
  /**
   * Releases a host. Must succeed when the resource is already gone (idempotent), and must work
   * for a record still in state `provisioning` (find by the record id tag).
   */
  release(record: HostRecord, ctx: ProviderContext): Promise<void>;
  /** Moves the lease end to `leaseExpires` (ISO). */
  extend?(record: HostRecord, leaseExpires: string, ctx: ProviderContext): Promise<void>;
  /** Lists the hosts this provider holds for this broker (by tags), for `sync`. */
  inventory?(ctx: ProviderContext): Promise<DiscoveredHost[]>;
  /** Runs an action that creates no host. */
  execute?(action: string, args: Record<string, unknown>, ctx: ProviderContext): Promise<unknown>;
  /** A transport for hosts with `connection.kind === 'provider'`. */
  transport?(record: HostRecord, ctx: ProviderContext): Transport;
  /** Live help: what the service offers (workflows, images, ...). `topic` narrows it. */
  describe?(ctx: ProviderContext, topic?: string): Promise<Record<string, unknown>>;
  /**
   * Removes resources tagged by this broker whose record is gone (`isKnown(id)` false) or whose
   * lease has passed. Returns what was removed.
   */
  reap?(ctx: ProviderContext, isKnown: (recordId: string) => boolean): Promise<string[]>;
  /** Frees clients and sockets. */
  close?(): Promise<void>;
}

/** Identity helper: gives a definition its full type. */
export function defineProvider<Args extends z.ZodType, Instance extends z.ZodType = z.ZodType>(
  definition: ProviderDefinition<Args, Instance>,
): ProviderDefinition<Args, Instance> {
  return definition;
}

/**
 * An SSH connection to `hostname` with the settings' `ssh` defaults (port, user, key path or
 * password variable): for providers whose hosts take the site's usual login.
 */
export function defaultSshConnection(hostname: string, ctx: ProviderContext): SshConnection {
  const ssh = ctx.settings.ssh;
  return {
    kind: 'ssh',
    host: hostname,
    port: ssh.port,
    username: ssh.username,
    ...(ssh.privateKeyPath ? { privateKeyPath: ssh.privateKeyPath } : {}),
    ...(ssh.passwordEnv ? { passwordEnv: ssh.passwordEnv } : {}),
  };
}

/** Tag keys every provider puts on what it creates. */
export const TAGS = {
  id: 'hostbroker.id',
  owner: 'hostbroker.owner',
  broker: 'hostbroker.broker',
  lease: 'hostbroker.lease',
  name: 'hostbroker.name',
} as const;

/** The standard tags for a record, as strings. */
export function standardTags(record: HostRecord): Record<string, string> {
  const tags: Record<string, string> = {
    [TAGS.id]: record.id,
    [TAGS.owner]: record.owner,
    [TAGS.broker]: record.brokerId,
    [TAGS.name]: record.name,
  };
  if (record.leaseExpires) tags[TAGS.lease] = record.leaseExpires;
  return tags;
}
