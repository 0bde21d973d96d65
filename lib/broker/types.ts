/**
 * The options and results of the Broker's public methods.
 * @module
 */
import type { Host, HostClass } from '../../hosts/host.js';
import type { Filter } from '../filter.js';
import type { Logger, LoggerStyle } from '../logger.js';
import type { AnyProviderDefinition } from '../provider.js';
import type { HostRecord, JumpHostInput } from '../records.js';
import type { ProviderArgs } from '../registry.js';
import type { ArgumentDoc } from '../requests.js';
import type { Duration, SettingsInput } from '../settings.js';
import type { InventoryStore } from '../inventory/store.js';
import type { ReadinessCheck } from '../../hosts/readiness.js';

/** Most hosts one checkout may ask for. */
export const MAX_COUNT = 1000;

/** Options for `new Broker()`. */
export interface BrokerOptions<H extends Host = Host> {
  /** Where settings and the inventory live. Default `$BROKER_DIRECTORY`, else `~/.broker`. */
  directory?: string;
  /** Settings given in code; merged over `broker_settings.yaml`. */
  settings?: SettingsInput;
  /** Class of the hosts checkout returns. */
  hostClass?: HostClass<H>;
  /** Where log lines go (secrets are scrubbed first): pino, winston, `console` or any {@link Logger}, as they are. */
  logger?: Logger;
  /** How `logger` takes fields, when detection guesses wrong (e.g. bunyan: `fields-first`). */
  loggerStyle?: LoggerStyle;
  /** Providers beyond the built-in ones (or replacing one by name). */
  providers?: readonly AnyProviderDefinition[];
  /** Where records live; default: the file store in `directory` (see `inventory.store` in settings). */
  store?: InventoryStore;
  /** Called as multi-host work progresses (the CLI draws a progress line from it). */
  onProgress?: (event: ProgressEvent) => void;
  /**
   * `execute` on the hosts this Broker hands out rejects with a CommandError when a command
   * exits non-zero (per call `{ check: false }` turns it off). Default false.
   */
  check?: boolean;
}

/** Progress of a multi-host operation. */
export interface ProgressEvent {
  operation: 'checkout' | 'checkin' | 'extend' | 'sync';
  /** How many are done (succeeded or failed). */
  done: number;
  total: number;
  /** The host this event is about. */
  host?: string;
  /** What happened to it (`started`: work on it began; `done` is unchanged). */
  outcome?: 'started' | 'ok' | 'failed';
}

/** Options every checkout takes, whatever the provider. */
export interface CheckoutOptions<H extends Host = Host> {
  /** How many hosts; with a count, checkout returns a HostGroup. */
  count?: number;
  /** Settings instance of the provider to use. */
  instance?: string;
  hostClass?: HostClass<H>;
  /** JSON or YAML file whose top-level keys become arguments. */
  argsFile?: string;
  /** Lease length (providers with leases), e.g. `4h`. */
  lease?: Duration;
  /** Limit for each host's checkout, e.g. `10m`. */
  timeout?: Duration;
  /** Hosts provisioned at once. */
  concurrency?: number;
  /** `abort` (default): one failure releases every host and throws. `keep`: return what succeeded. */
  onPartialFailure?: 'abort' | 'keep';
  /** Bundles (settings `bundles:`) applied after provisioning, before `setup()`. */
  bundles?: string[];
  /** Values for templated bundle scripts. */
  bundleVars?: Record<string, string>;
  /** Wait until SSH logins work before handing hosts out (default true). */
  waitForSsh?: boolean;
  /**
   * Gives the checkout up when aborted: no further host is started, running provider checkouts
   * are told (through their `ctx.signal`), everything made so far is released, and the call
   * rejects with an {@link AbortedError} whose `released`, `kept` and `neverStarted` say what
   * happened. A record is removed only when its release succeeded; one whose release failed stays
   * for `checkin` or `reap`. An already aborted signal rejects before any provider is asked.
   * It wins over `onPartialFailure: 'keep'`. A running `setup()` is not interrupted.
   */
  signal?: AbortSignal;
  /**
   * Readiness checks run before the host is handed out (after bundles, before `setup()`), within
   * the checkout's `timeout`: a check that never passes releases the host and fails the checkout
   * with a ReadinessError naming it and its last result. See docs/hosts.md.
   */
  waitFor?: readonly ReadinessCheck[];
  /**
   * Warm reuse: hand out a free, ready pooled host of this owner with the same recipe (provider,
   * instance, arguments) instead of making one, and return hosts to the pool at checkin instead
   * of releasing them. See docs/testing.md.
   */
  reuse?: boolean;
  /** With `reuse`: a command run at checkin before the host goes back to the pool (a failure releases it). */
  reset?: string;
  /** @internal deployment id (topologies). */
  deployment?: string;
  /** Jump hosts to reach the hosts through, first to last (OpenSSH `ProxyJump`); wins over the provider's and settings `ssh.jump`. */
  jump?: JumpHostInput[];
  /** @internal set by warm reuse: hosts made by this checkout return to the pool. */
  reuseMark?: ReuseMark;
}

/** @internal What a host checked out with `reuse` carries (`data.reuse`): its recipe hash and reset command. */
export interface ReuseMark {
  recipe: string;
  reset?: string;
  /** Token of the claim that took it out of the pool last. */
  claim?: string;
}

/** `{ provider, ...args }` for each known provider. */
export type ProviderRequest = { [P in keyof ProviderArgs]: { provider: P; nick?: string } & ProviderArgs[P] }[keyof ProviderArgs];
/** `{ nick }`, optionally with arguments that override the nick's. */
export type NickRequest = { nick: string; provider?: undefined } & Record<string, unknown>;
/** What `broker.checkout` takes. */
export type CheckoutRequest<H extends Host = Host> = (ProviderRequest | NickRequest) & CheckoutOptions<H>;

/** What `checkin`, `extend` and `duplicate` act on. */
export type HostTarget =
  | Host
  | Iterable<Host | HostRecord | string>
  | HostRecord
  | string
  | { all: true; filter?: Filter<HostRecord> }
  | { filter: Filter<HostRecord> };

/** Options for {@link Broker.checkin}. */
export interface CheckinOptions {
  /** Hosts released at once. */
  concurrency?: number;
  /** Release only when this JUnit XML file reports no failures or errors; else keep the hosts. */
  ifTestsPassed?: string;
  /**
   * Stops starting further releases when aborted; releases under way finish (a release cut off
   * half-way would leave a host nobody can see). Rejects with an {@link AbortedError} listing
   * what was released and what is left.
   */
  signal?: AbortSignal;
  /** Progress of this call (besides the Broker's `onProgress`), with the record id of each host. */
  onProgress?: (event: ProgressEvent & { id: string }) => void;
}

/** Result of {@link Broker.sync}. */
export interface SyncResult {
  added: HostRecord[];
  updated: HostRecord[];
  removed: HostRecord[];
}

/** What `broker.providers()` tells about one provider. */
export interface ProviderInfo {
  name: string;
  description: string;
  arguments: ArgumentDoc[];
  actions: Record<string, { description: string; arguments: ArgumentDoc[] }>;
  instances: string[];
  /** npm packages the provider needs that the user installs, and whether each is installed. */
  packages: { name: string; installed: boolean }[];
}

/** A request for a provider action that creates no host. */
export type ExecuteRequest = { provider: string; action: string; instance?: string } & Record<string, unknown>;
