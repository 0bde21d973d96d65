/**
 * Giving hosts back: checkin (live hosts run their own teardown first), the release of one
 * record through its provider, and keeping hosts for a person to look at.
 * @module
 */
import { mapSettled, outcomes, throwFailures, abortReason } from '../concurrency.js';
import { AbortedError, asError } from '../errors.js';
import type { HostRecord } from '../records.js';
import { scrub } from '../secrets.js';
import type { BrokerCore } from './core.js';
import { syncKnownHosts } from './sessions.js';
import { resolveTarget, type TargetItem } from './targets.js';
import type { CheckinOptions, HostTarget } from './types.js';

/**
 * Releases one record through its provider and forgets it. A record already gone is done; a
 * failed release keeps the record (state as before, `lastError` set) and rethrows.
 */
export async function releaseRecord(core: BrokerCore, record: HostRecord): Promise<void> {
  // An unknown provider is an error only for a record still there.
  const runtime = await Promise.resolve()
    .then(() => core.runtime(record.provider))
    .catch(async (error: unknown) => {
      if (await core.store.has(record.id)) throw error;
      return undefined;
    });
  if (!runtime) {
    core.held.delete(record.id);
    return;
  }
  // Marking it releasing reads it too (no separate read): a record already gone is done.
  const seen: { record?: HostRecord } = {};
  const marked = await core.store.patch(record.id, (r) => {
    seen.record = r;
    return { state: 'releasing' };
  });
  const current = seen.record;
  if (!marked || !current) {
    core.held.delete(record.id);
    return; // already checked in (by another process or call)
  }
  try {
    await runtime.call((impl) => impl.release(current, runtime.hostContext(current)));
  } catch (error) {
    await core.store.patch(current.id, { state: current.state, lastError: asError(error).message }).catch(() => undefined);
    throw error;
  }
  await core.store.remove([current.id]);
  await syncKnownHosts(core, [current]);
  core.held.delete(current.id);
  core.logger.info(`checked in ${current.name}`, { id: current.id, provider: current.provider });
}

/** What a Host's checkin asks of its owner: release its record and close what this Broker had open for it. */
export async function releaseHostRecord(core: BrokerCore, record: HostRecord): Promise<void> {
  try {
    await releaseRecord(core, record);
  } finally {
    await core.closeSession(record.id);
  }
}

/** Stops holding a host and closes its connections (it stays checked out). */
async function letGo(core: BrokerCore, { record, host }: TargetItem): Promise<void> {
  core.held.delete(record.id);
  await host?.disconnect().catch(() => undefined);
  await core.closeSession(record.id);
}

/**
 * Checks hosts in, concurrently: a live Host runs its teardown then asks for its release; a bare
 * record is released. One failure never stops the others; a record is removed only when its
 * release succeeded. With a signal, no further release starts after an abort.
 */
export async function checkin(core: BrokerCore, target: HostTarget, options: CheckinOptions = {}): Promise<void> {
  if (options.ifTestsPassed !== undefined) {
    const { junitPassed } = await import('../junit.js');
    const verdict = await junitPassed(options.ifTestsPassed);
    if (!verdict.passed) {
      // Kept, and no longer held: disposing this Broker must not check them in either.
      await keep(core, target, `tests did not pass (${verdict.summary}); kept for inspection`);
      return;
    }
  }
  const items = await resolveTarget(core, target);
  const signal = options.signal;
  const notStarted = new Set<number>();
  let done = 0;
  const settled = await mapSettled(items, options.concurrency ?? 16, async (item, index) => {
    if (signal?.aborted) {
      notStarted.add(index);
      throw signal.reason;
    }
    const report = (outcome: 'started' | 'ok' | 'failed'): void => {
      const event = { operation: 'checkin' as const, done: outcome === 'started' ? done : ++done, total: items.length, host: item.record.name, outcome };
      core.progress(event);
      options.onProgress?.({ ...event, id: item.record.id });
    };
    report('started');
    try {
      await (item.host ? item.host.checkin() : releaseHostRecord(core, item.record));
      report('ok');
    } catch (error) {
      report('failed');
      throw error;
    }
  });
  const o = outcomes(items, settled, (i) => i.record.name);
  if (signal?.aborted && notStarted.size) {
    const started = outcomes(
      items.filter((_, i) => !notStarted.has(i)),
      settled.filter((_, i) => !notStarted.has(i)),
      (i) => i.record.name,
    );
    const left = items.filter((_, i) => notStarted.has(i) || settled[i]!.status === 'rejected').map((i) => i.record.id);
    const failed = started.failures.map((f) => `${f.target}: ${f.error.message}`).join('; ');
    throw new AbortedError(
      `checkin of ${items.length} host(s) was aborted${abortReason(signal)}: released ${started.succeeded.length}, ${notStarted.size} not started` +
        `${failed ? `, ${started.failures.length} failed (${failed})` : ''}; their records are kept: finish with \`hostbroker checkin ${left.join(' ')}\`.`,
      { released: started.succeeded.map((i) => i.record.name), kept: left, neverStarted: notStarted.size, failed: started.failures, reason: signal.reason },
    );
  }
  throwFailures(
    o.failures,
    items.length,
    `${o.failures.length} of ${items.length} host(s) could not be checked in (their records are kept):`,
    o.succeeded.map((i) => i.record),
  );
}

/**
 * Keeps hosts for a person to look at: records `kept: { reason, at }`, closes their sessions and
 * stops holding them, so disposing this Broker does not check them in.
 */
export async function keep(core: BrokerCore, target: HostTarget, reason: string): Promise<HostRecord[]> {
  const items = await resolveTarget(core, target);
  const at = new Date().toISOString();
  const why = scrub(reason); // a failure text may quote a password or token
  const kept: HostRecord[] = [];
  for (const item of items) {
    const next = await core.store.patch(item.record.id, { kept: { reason: why, at } });
    if (next) kept.push(next);
    await letGo(core, item);
  }
  core.logger.warn(`keeping ${kept.length} host(s): ${why}`, { hosts: kept.map((r) => r.name) });
  return kept;
}

/** Clears the kept mark, so `checkin --all`, reaping and lease expiry treat the hosts as usual again. */
export async function unkeep(core: BrokerCore, target: HostTarget): Promise<HostRecord[]> {
  const items = await resolveTarget(core, target);
  const cleared: HostRecord[] = [];
  for (const item of items) {
    let wasKept = false;
    const next = await core.store.patch(item.record.id, (current) => ((wasKept = current.kept !== undefined) ? { kept: undefined } : undefined));
    if (next && wasKept) cleared.push(next);
  }
  core.logger.info(`no longer keeping ${cleared.length} host(s)`, { hosts: cleared.map((r) => r.name) });
  return cleared;
}

/**
 * Drops records without asking their provider: for a record whose host is known to be gone, or
 * that no provider can release (e.g. its SDK is not installed). What the provider made, if
 * anything, stays; `reap` finds it again by its tags. Returns the records dropped.
 */
export async function forget(core: BrokerCore, target: HostTarget): Promise<HostRecord[]> {
  const items = await resolveTarget(core, target);
  const removed = new Set(await core.store.remove(items.map((i) => i.record.id)));
  const gone = items.filter((i) => removed.has(i.record.id)).map((i) => i.record);
  for (const item of items) await letGo(core, item);
  if (gone.length) await syncKnownHosts(core, gone);
  core.logger.warn(`forgot ${gone.length} record(s) without releasing them; \`hostbroker reap\` finds what their providers still hold`, {
    hosts: gone.map((r) => r.name),
  });
  return gone;
}
