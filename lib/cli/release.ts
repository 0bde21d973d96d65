/**
 * Releases of many hosts that a first SIGINT/SIGTERM does not cut half-way: the releases under
 * way finish, no new one starts, and the command ends (130/143) saying what was checked in and
 * what is left, with the command that finishes the job. A second signal exits at once; a record
 * whose release was under way stays in the inventory (state `releasing`) for `checkin` or `reap`.
 * @module
 */
import type { Host } from '../../hosts/host.js';
import { AbortedError, PartialFailureError, asError } from '../errors.js';
import type { HostRecord } from '../records.js';
import type { CliContext } from './context.js';

/** One host to release: a live Host (its teardown runs) or an inventory record. */
export type ReleaseTarget = Host | HostRecord;

/** Options for {@link releaseMany}. */
export interface ReleaseManyOptions {
  /** Releases at once. */
  concurrency: number;
  /** The command that finishes what an interruption left, given the ids left. */
  finish: (ids: string[]) => string;
  /** Runs after every release succeeded, before the command ends, unless interrupted. */
  afterAll?: () => Promise<void>;
}

const nameOf = (t: ReleaseTarget): string => t.name;
const idOf = (t: ReleaseTarget): string => t.id;

/**
 * Checks `targets` in through `broker.checkin` with the run's interrupt signal. Without a signal
 * it fails as `broker.checkin` does (the one error for one host, else a PartialFailureError whose
 * message says how to retry); after a signal it throws an AbortedError naming what was checked
 * in and what is left.
 */
export async function releaseMany(ctx: CliContext, targets: readonly ReleaseTarget[], options: ReleaseManyOptions): Promise<void> {
  const broker = ctx.broker();
  const underWay = new Set<string>();
  const released = new Set<string>();
  const left = (): ReleaseTarget[] => targets.filter((t) => !released.has(idOf(t)));
  const onProgress = (e: { id: string; outcome?: string }): void => {
    if (e.outcome === 'started') underWay.add(e.id);
    else underWay.delete(e.id);
    if (e.outcome === 'ok') released.add(e.id);
  };
  const running = (): ReleaseTarget[] => targets.filter((t) => underWay.has(idOf(t)));
  try {
    await ctx.interruptible(
      async (signal) => {
        await broker.checkin(targets, { concurrency: options.concurrency, signal, onProgress });
        if (!signal.aborted && options.afterAll) await options.afterAll();
      },
      {
        stopping: (again) => {
          const now = running();
          const waiting = targets.length - released.size - now.length;
          const parts = [now.length ? `finishing the ${now.length} release(s) under way (${now.map(nameOf).join(', ')})` : 'finishing up'];
          if (waiting > 0) parts.push(`not starting the other ${waiting}`);
          return `${parts.join('; ')} (${again}; hosts not checked in stay in the inventory)`;
        },
        exiting: () => {
          const rest = left();
          if (!rest.length) return 'Every host was checked in.';
          const list = rest.map((t) => `${nameOf(t)}${underWay.has(idOf(t)) ? ' (releasing)' : ''}`).join(', ');
          return `Not checked in: ${list}; they stay in the inventory. Finish with \`${options.finish(rest.map(idOf))}\`.`;
        },
      },
    );
  } catch (error) {
    if (error instanceof AbortedError) {
      const rest = left();
      const done = targets.filter((t) => released.has(idOf(t)));
      const failed = error.failed.map((f) => `${f.target}: ${f.error.message}`).join('; ');
      const parts = [`checked in ${done.length} of ${targets.length} host(s)${done.length ? ` (${done.map(nameOf).join(', ')})` : ''}`];
      if (failed) parts.push(`failed: ${failed}`);
      if (rest.length) parts.push(`${rest.length} still in the inventory (${rest.map(nameOf).join(', ')}); finish with \`${options.finish(rest.map(idOf))}\``);
      throw new AbortedError(`${asError(error.reason).message}: ${parts.join('; ')}.`, { ...error, reason: error.reason });
    }
    if (error instanceof PartialFailureError) {
      throw new PartialFailureError(
        `${error.failures.length} of ${targets.length} host(s) could not be checked in (their records are kept; try again with \`${options.finish(left().map(idOf))}\`):`,
        error.failures,
        error.succeeded,
      );
    }
    throw error;
  }
}
