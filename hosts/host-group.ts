/**
 * Several hosts from one checkout: an array you can index and iterate, with fan-out `execute`,
 * `checkin` and `await using` cleanup.
 * @module
 */
import { outcomes } from '../lib/concurrency.js';
import { PartialFailureError, type FailureEntry } from '../lib/errors.js';
import type { Host } from './host.js';
import type { ExecOptions, Result } from './result.js';

/** Hosts checked out together. */
export class HostGroup<H extends Host = Host> extends Array<H> implements AsyncDisposable {
  /** Hosts that failed under `onPartialFailure: 'keep'` (what and why). */
  failures: FailureEntry[] = [];

  // Array methods such as map and filter give plain arrays.
  static override get [Symbol.species](): ArrayConstructor {
    return Array;
  }

  /** Builds a group from hosts. */
  static fromHosts<H extends Host>(hosts: Iterable<H>, failures: FailureEntry[] = []): HostGroup<H> {
    const group = new HostGroup<H>();
    group.push(...hosts);
    group.failures = failures;
    return group;
  }

  /** Runs a command on every host at once; one Result per host, in order. */
  async execute(command: string, options?: ExecOptions): Promise<Result[]> {
    const o = outcomes(this, await Promise.allSettled(this.map((h) => h.execute(command, options))), (h) => h.name);
    if (o.failures.length)
      throw new PartialFailureError(`\`${command}\` could not run on ${o.failures.length} of ${this.length} hosts:`, o.failures, o.succeeded);
    return o.values;
  }

  /** Checks every host in; one failure never stops the others. */
  async checkin(): Promise<void> {
    const o = outcomes(this, await Promise.allSettled(this.map((h) => h.checkin())), (h) => h.name);
    if (o.failures.length) throw new PartialFailureError(`${o.failures.length} of ${this.length} hosts could not be checked in:`, o.failures, o.succeeded);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.checkin();
  }
}
