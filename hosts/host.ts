/**
 * A checked-out host. Subclass it to add your own setup/teardown and helpers, and pass the class
 * as `hostClass`. Hosts talk to their machine through {@link Session}; checkin and extend go back
 * through the Broker that made them.
 * @module
 */
import { PartialFailureError, UserInputError, asError, type FailureEntry } from '../lib/errors.js';
import type { HostRecord } from '../lib/records.js';
import type { HostProcess, ProcessOptions } from './process.js';
import type { Address, ReadinessCheck, WaitOptions } from './readiness.js';
import type { ApplyConfig, PlanReport, SitePlan } from './config/index.js';
import type { ExecOptions, Result } from './result.js';
import type { Session } from './session.js';

/** What a Host needs from the Broker that made it. */
export interface HostOwner {
  /** Opens (or reuses) the session for a record. */
  sessionFor(record: HostRecord): Session;
  /**
   * Releases the host's record through its provider and forgets it (the Host ran its teardown);
   * `'pooled'` when it went back to the warm-reuse pool instead (its session stays open).
   */
  release(record: HostRecord): Promise<void | 'pooled'>;
  /** Extends the host's lease. */
  extend(host: Host, options?: { lease?: string | number }): Promise<void>;
  /** The current record of a host id (after extend, the lease changed). */
  recordOf(id: string): Promise<HostRecord | undefined>;
}

/** What the Broker passes to a Host constructor. */
export interface HostInit {
  record: HostRecord;
  owner: HostOwner;
  /** Default of `check` for `execute` (the Broker's `check` option). */
  check?: boolean;
}

export type { Address } from './readiness.js';

/** Constructor type for `hostClass`. */
export type HostClass<H extends Host = Host> = new (init: HostInit) => H;

/** A host checked out from a provider. */
export class Host implements AsyncDisposable {
  #record: HostRecord;
  readonly #owner: HostOwner;
  #session: Session | undefined;
  #disposal: Promise<void> | undefined;
  /** Teardown runs once, even when a release is retried. */
  #tornDown = false;
  /**
   * Whether `execute` rejects with a CommandError on a status other than 0 unless told
   * otherwise per call (`{ check: false }`). Default: the Broker's `check` option, else false.
   */
  check: boolean;

  constructor(init: HostInit) {
    this.#record = init.record;
    this.#owner = init.owner;
    this.check = init.check ?? false;
  }

  /** Inventory record id. */
  get id(): string {
    return this.#record.id;
  }
  /** Display name. */
  get name(): string {
    return this.#record.name;
  }
  /** Address the host is reached at. */
  get hostname(): string {
    return this.#record.hostname;
  }
  /** Provider that made the host. */
  get provider(): string {
    return this.#record.provider;
  }
  /** The inventory record (a copy as of checkout or the last refresh). */
  get record(): HostRecord {
    return this.#record;
  }

  /** The host's session, opened lazily on first use. */
  get session(): Session {
    this.#session ??= this.#owner.sessionFor(this.#record);
    return this.#session;
  }

  /**
   * Runs a command. A non-zero status is returned in the Result, or, with `check` (per call or
   * {@link Host.check}), rejects with a CommandError carrying the command, status and output tails.
   */
  execute(command: string, options?: ExecOptions): Promise<Result> {
    return this.session.run(command, { check: this.check, ...options });
  }

  /**
   * Starts a long-running command and returns at once (see {@link HostProcess}):
   * `await using server = await host.spawn('python3 -m http.server 8080')` stops it, and every
   * process it started, at the end of the scope.
   */
  spawn(command: string, options?: ProcessOptions): Promise<HostProcess> {
    return this.session.spawn(command, options);
  }

  /**
   * Where this process connects to `port` of the host: its published port (containers, VM
   * forwards), else `hostname:port`. A container port that was not published is a UserInputError.
   */
  address(port: number): Address {
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new UserInputError(`address() needs a port number from 1 to 65535, not ${JSON.stringify(port)}.`);
    const mapped = this.#record.ports?.[String(port)];
    if (mapped) return { host: mapped.host, port: mapped.port };
    // A host with a port map (a container, a VM behind forwards) is reachable only through it.
    if (this.#record.ports) {
      const published = Object.keys(this.#record.ports ?? {});
      throw new UserInputError(
        `port ${port} of ${this.name} is not published, so this process cannot reach it${published.length ? ` (published: ${published.join(', ')})` : ''}; check out with \`ports: [${port}]\`.`,
      );
    }
    return { host: this.#record.connection?.kind === 'ssh' ? this.#record.connection.host : this.hostname, port };
  }

  /**
   * Waits until a readiness check passes (`{ port }`, `{ http }`, `{ command }`, `{ file, contains }`,
   * or `{ all }`/`{ any }` of them); a TimeoutError names the check and its last result.
   */
  async waitFor(check: ReadinessCheck | readonly ReadinessCheck[], options?: WaitOptions): Promise<void> {
    const { waitUntilReady } = await import('./readiness.js');
    await waitUntilReady(this, check, options);
  }

  /** Applies a site plan in a mode (`install`, `clean`, ...); resolves to a report per step. See docs/configuration.md. */
  async apply(plan: SitePlan, mode: string, cfg?: ApplyConfig): Promise<PlanReport> {
    const { applyPlan } = await import('./config/site-plan.js');
    return applyPlan(this, plan, mode, cfg);
  }

  /** Validates a site plan in a mode without changing the host; drift fails a step. */
  async validate(plan: SitePlan, mode: string, cfg?: ApplyConfig): Promise<PlanReport> {
    const { validatePlan } = await import('./config/site-plan.js');
    return validatePlan(this, plan, mode, cfg);
  }

  /** Runs after checkout, before the host is handed out. Override it. */
  async setup(): Promise<void> {}

  /** Runs before checkin. Override it. */
  async teardown(): Promise<void> {}

  /**
   * Checks the host in: teardown, release, forget. Calls while one is under way (or after it
   * succeeded) share its result; after a failure, calling again retries the release.
   */
  checkin(): Promise<void> {
    this.#disposal ??= this.#checkin().catch((error: unknown) => {
      this.#disposal = undefined;
      throw error;
    });
    return this.#disposal;
  }

  /** Teardown (once), then release; an error in one never skips the other. */
  async #checkin(): Promise<void> {
    const errors: FailureEntry[] = [];
    if (!this.#tornDown) {
      this.#tornDown = true;
      try {
        await this.teardown();
      } catch (error) {
        errors.push({ target: `${this.name} teardown`, error: asError(error) });
      }
    }
    // A server the test forgot to stop would outlive the checkin (and be there for the pool's next user).
    await this.#session?.stopProcesses().catch(() => undefined);
    let pooled = false;
    try {
      pooled = (await this.#owner.release(this.#record)) === 'pooled';
    } catch (error) {
      errors.push({ target: `${this.name} release`, error: asError(error) });
    } finally {
      // A pooled host keeps its connection for the next checkout in this process.
      if (!pooled) await this.disconnect().catch(() => undefined);
    }
    if (errors.length === 1 && errors[0]!.target.endsWith('release')) throw errors[0]!.error;
    if (errors.length) throw new PartialFailureError(`checkin of ${this.name} had ${errors.length} error(s):`, errors);
  }

  /** Extends the lease where the provider supports it. */
  async extend(options?: { lease?: string | number }): Promise<void> {
    await this.#owner.extend(this, options);
    await this.refresh();
  }

  /** Re-reads the record from the inventory. */
  async refresh(): Promise<HostRecord> {
    const latest = await this.#owner.recordOf(this.id);
    if (latest) this.#record = latest;
    return this.#record;
  }

  /** Closes the session's connections (checkin does this too). */
  async disconnect(): Promise<void> {
    await this.#session?.close();
  }

  /** `await using host = ...` checks the host in: teardown, then release, on one code path. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.checkin();
  }

  toJSON(): Record<string, unknown> {
    return { ...this.#record };
  }

  toString(): string {
    return `${this.name} (${this.hostname || this.id})`;
  }
}
