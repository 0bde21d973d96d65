/**
 * Releases of many hosts that a first SIGINT/SIGTERM does not cut half-way: the releases under
 * way finish, no new one starts, and the command ends (130/143) saying what was checked in and
 * what is left, with the command that finishes the job. A second signal exits at once; a record
 * whose release was under way stays in the inventory (state `releasing`) for `checkin` or `reap`.
 * @module
 */
import type { Host } from '../../hosts/host.js';
import { mapSettled } from '../concurrency.js';
import { AbortedError, PartialFailureError, asError, type FailureEntry } from '../errors.js';
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
  then?: () => Promise<void>;
}

const nameOf = (t: ReleaseTarget): string => t.name;
const idOf = (t: ReleaseTarget): string => t.id;

/**
 * Checks `targets` in through `broker.checkin`, `concurrency` at a time. Without a signal it fails
 * as `broker.checkin` does (the one error for one host, else a PartialFailureError); after a
 * signal it throws an AbortedError naming what was checked in and what is left.
 */
export async function releaseMany(ctx: CliContext, targets: readonly ReleaseTarget[], options: ReleaseManyOptions): Promise<void> {
  const broker = ctx.broker();
  const underWay = new Set<ReleaseTarget>();
  const released = new Set<ReleaseTarget>();
  const notStarted = new Set<ReleaseTarget>();
  const left = (): ReleaseTarget[] => targets.filter((t) => !released.has(t));
  let done = 0;
  let signalled: AbortSignal | undefined;
  const settled = await ctx.interruptible(
    async (signal) => {
      signalled = signal;
      const results = await mapSettled(targets, options.concurrency, async (target) => {
        if (signal.aborted) {
          notStarted.add(target);
          return;
        }
        underWay.add(target);
        let outcome: 'ok' | 'failed' = 'failed';
        try {
          await broker.checkin(target);
          released.add(target);
          outcome = 'ok';
        } finally {
          underWay.delete(target);
          ctx.progress.onBroker({ operation: 'checkin', done: ++done, total: targets.length, host: nameOf(target), outcome });
        }
      });
      const failed = results.some((r) => r.status === 'rejected');
      if (!signal.aborted && !failed && options.then) await options.then();
      return results;
    },
    {
      stopping: (again) => {
        const running = [...underWay];
        const waiting = targets.length - released.size - running.length - notStarted.size;
        const parts = [running.length ? `finishing the ${running.length} release(s) under way (${running.map(nameOf).join(', ')})` : 'finishing up'];
        if (waiting > 0) parts.push(`not starting the other ${waiting}`);
        return `${parts.join('; ')} (${again}; hosts not checked in stay in the inventory)`;
      },
      exiting: () => {
        const rest = left();
        if (!rest.length) return 'Every host was checked in.';
        const running = new Set(underWay);
        const list = rest.map((t) => `${nameOf(t)}${running.has(t) ? ' (releasing)' : ''}`).join(', ');
        return `Not checked in: ${list}; they stay in the inventory. Finish with \`${options.finish(rest.map(idOf))}\`.`;
      },
    },
  );

  const failures: FailureEntry[] = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ target: nameOf(targets[i]!), error: asError(s.reason) }] : []));
  if (signalled?.aborted) {
    const rest = left();
    const parts = [`checked in ${released.size} of ${targets.length} host(s)${released.size ? ` (${targets.filter((t) => released.has(t)).map(nameOf).join(', ')})` : ''}`];
    if (failures.length) parts.push(`failed: ${failures.map((f) => `${f.target}: ${f.error.message}`).join('; ')}`);
    if (rest.length) parts.push(`${rest.length} still in the inventory (${rest.map(nameOf).join(', ')}); finish with \`${options.finish(rest.map(idOf))}\``);
    throw new AbortedError(`${asError(signalled.reason).message}: ${parts.join('; ')}.`, {
      released: targets.filter((t) => released.has(t)).map(nameOf),
      kept: rest.map(idOf),
      neverStarted: notStarted.size,
      reason: signalled.reason,
    });
  }
  if (failures.length === 1 && targets.length === 1) throw failures[0]!.error;
  if (failures.length) {
    const ids = left().map(idOf);
    throw new PartialFailureError(`${failures.length} of ${targets.length} host(s) could not be checked in (their records are kept; try again with \`${options.finish(ids)}\`):`, failures);
  }
}
