/**
 * The provider contract: the seam every provider plugs into. See `docs/providers.md`.
 *
 * A provider comes in two parts so that importing hostbroker stays cheap:
 * - a {@link ProviderDefinition} (name, zod schemas, docs) that is loaded eagerly and is light
 *   (only zod; the built-in ones build their schemas on first use), so `broker.providers()` and
 *   argument validation need no SDK;
 * - a {@link ProviderImplementation} loaded on first use through `load()`, which may import its SDK
 *   lazily (see {@link importOptional}).
 * The Broker does concurrency, intent records, leases and error policy; a provider creates,
 * releases and lists one host at a time.
 * @module
 */
import type { z } from 'zod';
import type { Logger } from './logger.js';
import type { Connection, HostRecord, PortMap, SshConnection } from './records.js';
import type { Settings } from './settings.js';
import type { Transport } from '../hosts/session.js';

/**
 * Version of the provider contract a definition is written against. The Broker refuses a
 * definition of another version with a message, instead of failing half-way through a checkout.
 */
export const SPECIFICATION_VERSION = 'v2';

/** What a provider is given for every call. */
export interface ProviderContext<Instance = Record<string, unknown>> {
  /** Provider name, e.g. `container`. */
  provider: string;
  /** Name of the settings instance in use. */
  instance: string;
  /** That instance's settings, parsed once by the definition's `instance` schema. */
  instanceSettings: Instance;
  /** The whole validated settings. */
  settings: Settings;
  /** The broker directory (settings, inventory, keys). */
  directory: string;
  /** Stable identity of the broker directory; tag resources with it. */
  brokerId: string;
  /** User name recorded as owner. */
  owner: string;
  logger: Logger;
  /** Aborted when the operation is given up (deadline, abort policy, the caller's signal). */
  signal: AbortSignal;
  /**
   * Who holds which resource of this provider's pool (resource → record), as claimed through
   * {@link HostContext.reserve}: for pool providers' checkout errors, actions and help.
   */
  holders(): Promise<Map<string, HostRecord>>;
}

/**
 * What a provider is given for a call about one host (checkout, release, extend). The record is
 * the Broker's; the provider writes nothing but its own facts, through `checkpoint`.
 */
export interface HostContext<Instance = Record<string, unknown>> extends ProviderContext<Instance> {
  /**
   * Notes facts on this host's record at once (merged into `record.data`; no secrets), so that a
   * process killed right after still leaves them for `release` or `reap`: e.g. a launched job's
   * id. Returns the stored record.
   */
  checkpoint(data: Record<string, unknown>): Promise<HostRecord>;
  /**
   * Claims the first of `candidates` that no other host of this provider holds (whichever
   * instance: two instances listing one machine share it), for this host, exclusively across
   * every process sharing the inventory; undefined when all are held. The claim goes with the
   * record (checkin frees it). For providers that choose from a pool.
   */
  reserve(candidates: readonly string[]): Promise<string | undefined>;
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
  /** Where this process reaches the host's ports when not at `hostname` (published ports, forwards). */
  ports?: PortMap;
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

/** A provider action that creates no host (`broker.execute`): its docs and argument schema. */
export interface ProviderActionDefinition<S extends z.ZodType = z.ZodType> {
  description: string;
  schema: S;
}

/** Action name → its definition. */
export type ProviderActions = Record<string, ProviderActionDefinition>;

/** The light, eagerly loaded part of a provider. */
export interface ProviderDefinition<
  Args extends z.ZodType = z.ZodType,
  Instance extends z.ZodType = z.ZodType,
  Actions extends ProviderActions = ProviderActions,
> {
  /** The contract version this definition follows: {@link SPECIFICATION_VERSION}. */
  specificationVersion: typeof SPECIFICATION_VERSION;
  /** Name used in requests and settings, lower-case: `container`, `ec2`. */
  name: string;
  /** One line for `providers()` help. */
  description: string;
  /** Checkout arguments; unknown keys are rejected. */
  args: Args;
  /** Settings of one instance (`<name>.instances.<instance>` in broker_settings.yaml). */
  instance?: Instance;
  /** Actions for `broker.execute`, by name; the implementation has a function for each. */
  actions?: Actions;
  /**
   * False for a provider that works with no settings at all (`local`): `sync` and `reap` then
   * look at it even when settings do not mention it. Default true.
   */
  needsSettings?: boolean;
  /**
   * Maps one topology host (`broker.up`) to this provider's checkout arguments, using the
   * provider's `provisioning` config (os → image, group → flavor/size, network). Without it,
   * the topology passes `{ name }` plus the host's `args`.
   */
  fromTopology?(host: TopologyHost, provisioning: ProvisioningConfig): Record<string, unknown>;
  /**
   * npm packages the implementation imports that the user installs (SDKs, engine clients): the
   * Broker checks they are installed before it records a checkout, and `providers` lists them.
   */
  packages?: readonly string[];
  /** Loads the implementation (dynamic import). */
  load(): Promise<ProviderImplementation<z.output<Args>, InstanceOf<Instance>, Actions>>;
}

/** Instance settings as a provider sees them: the schema's output, or a plain mapping. */
export type InstanceOf<Instance extends z.ZodType> = z.ZodType extends Instance ? Record<string, unknown> : z.output<Instance>;

/** Any definition, whatever its schemas (what registries and the Broker hold). */
// biome-ignore lint/suspicious/noExplicitAny: a registry holds definitions of every shape
export type AnyProviderDefinition = ProviderDefinition<any, any, any>;

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

/** The part of a provider that does the work. It returns data and never writes the inventory. */
export interface ProviderImplementation<Args = Record<string, unknown>, Instance = Record<string, unknown>, Actions extends ProviderActions = ProviderActions> {
  /**
   * Creates one host. Throw a ProviderError (retryable where it is) on failure; when the failure
   * left hosts behind that you cannot release, name them in the error's `dangling` so the Broker
   * records them.
   */
  checkout(args: Args, target: CheckoutTarget, ctx: HostContext<Instance>): Promise<ProvisionedHost>;
  /**
   * Releases a host, given its current record. Must succeed when the resource is already gone
   * (idempotent), and must work for a record still in state `provisioning` (find it by the
   * record id tag or by what `ctx.checkpoint` noted).
   */
  release(record: HostRecord, ctx: HostContext<Instance>): Promise<void>;
  /** Moves the lease end to `leaseExpires` (ISO). */
  extend?(record: HostRecord, leaseExpires: string, ctx: HostContext<Instance>): Promise<void>;
  /**
   * Lists what this provider holds for this broker (by its tags), for `sync` and `reap`: every
   * resource carries its record `id`, `brokerId`, `createdAt` and `leaseExpires` where tagged.
   * The Broker decides what is orphaned or expired and releases it through `release`.
   */
  discover?(ctx: ProviderContext<Instance>): Promise<DiscoveredHost[]>;
  /** One function per action of the definition, given that action's parsed arguments. */
  actions?: { [K in keyof Actions]: (args: z.output<Actions[K]['schema']>, ctx: ProviderContext<Instance>) => Promise<unknown> };
  /** A transport for hosts with `connection.kind === 'provider'`. */
  transport?(record: HostRecord, ctx: ProviderContext<Instance>): Transport;
  /** Live help: what the service offers (workflows, images, ...). `topic` narrows it. */
  describe?(ctx: ProviderContext<Instance>, topic?: string): Promise<Record<string, unknown>>;
  /**
   * Only for leftovers `discover()` cannot list (e.g. files without a host): removes those
   * tagged by this broker whose record is gone (`isKnown(id)` false). Returns what was removed.
   */
  reap?(ctx: ProviderContext<Instance>, isKnown: (recordId: string) => Promise<boolean>): Promise<string[]>;
  /** Frees clients and sockets. */
  close?(): Promise<void>;
}

/** The implementation type that belongs to a definition. */
export type ImplementationOf<D> =
  D extends ProviderDefinition<infer Args, infer Instance, infer Actions> ? ProviderImplementation<z.output<Args>, InstanceOf<Instance>, Actions> : never;

/**
 * The implementation type for a definition's schemas. Annotate `load` with it when `provider.ts`
 * is typed by {@link implementProvider}: each file's type refers to the other's, and TypeScript
 * needs one of them spelt out (`load: async (): Promise<ImplementationFor<typeof Args, typeof
 * Instance>> => (await import('./provider.js')).default`).
 */
export type ImplementationFor<
  Args extends z.ZodType,
  Instance extends z.ZodType = z.ZodType,
  Actions extends ProviderActions = ProviderActions,
> = ProviderImplementation<z.output<Args>, InstanceOf<Instance>, Actions>;

/** Identity helper: gives a definition its full type and the current contract version. */
export function defineProvider<Args extends z.ZodType, Instance extends z.ZodType = z.ZodType, Actions extends ProviderActions = ProviderActions>(
  definition: Omit<ProviderDefinition<Args, Instance, Actions>, 'specificationVersion'> & { specificationVersion?: typeof SPECIFICATION_VERSION },
): ProviderDefinition<Args, Instance, Actions> {
  return { ...definition, specificationVersion: SPECIFICATION_VERSION };
}

/**
 * Identity helper for `provider.ts`: types an implementation from its definition, so every
 * function sees its parsed arguments, instance settings and actions without casts.
 */
export function implementProvider<D extends AnyProviderDefinition>(_definition: D, implementation: ImplementationOf<D>): ImplementationOf<D> {
  return implementation;
}

/**
 * An SSH connection to `hostname` with the settings' `ssh` defaults (port, user, key path or
 * password variable): for providers whose hosts take the site's usual login.
 */
export function defaultSshConnection(hostname: string, ctx: Pick<ProviderContext, 'settings'>): SshConnection {
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
