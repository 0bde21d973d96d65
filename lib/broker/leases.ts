/**
 * Leases: moving the end of hosts' leases through providers that have them.
 * @module
 */
import { mapAll } from '../concurrency.js';
import { UserInputError } from '../errors.js';
import { toMs, type Duration } from '../settings.js';
import type { BrokerCore } from './core.js';
import { resolveTarget } from './targets.js';
import type { HostTarget } from './types.js';

/** Extends the lease of hosts whose provider supports it, by `lease` (or settings' `checkout.lease`) from now. */
export async function extend(core: BrokerCore, target: HostTarget, options: { lease?: Duration } = {}): Promise<void> {
  const items = await resolveTarget(core, target);
  let done = 0;
  await mapAll(
    items,
    16,
    async ({ record }) => {
      const runtime = core.runtime(record.provider);
      const impl = await runtime.require('extend', record.name);
      const lease = options.lease ?? core.settings.checkout.lease;
      if (lease === undefined) throw new UserInputError(`say how long to extend ${record.name} for: pass { lease: '4h' } or set checkout.lease in settings.`);
      const leaseExpires = new Date(Date.now() + toMs(lease)).toISOString();
      await runtime.call(() => impl.extend(record, leaseExpires, runtime.hostContext(record)));
      await core.store.patch(record.id, { leaseExpires });
      core.progress({ operation: 'extend', done: ++done, total: items.length, host: record.name, outcome: 'ok' });
    },
    (i) => i.record.name,
    (failed, total) => `${failed} of ${total} lease(s) could not be extended:`,
  );
}
