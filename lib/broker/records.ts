/**
 * The records the Broker writes: the intent record before a provider is asked, records of hosts a
 * failed checkout left behind (kept), and records of resources a provider reports (sync, reap).
 * @module
 */
import { hostname as machineHostname } from 'node:os';
import { type ProviderError, asError } from '../errors.js';
import { newRecordId, shortId } from '../identity.js';
import type { DiscoveredHost } from '../provider.js';
import type { HostRecord } from '../records.js';
import { redact } from '../secrets.js';
import type { BrokerCore } from './core.js';

/** The record written before a provider is asked: it is what makes a killed checkout findable. */
export function intentRecord(
  core: BrokerCore,
  o: {
    provider: string;
    instance: string;
    args: Record<string, unknown>;
    nick: string | undefined;
    index: number;
    count: number;
    leaseMs: number | undefined;
    deployment: string | undefined;
  },
): HostRecord {
  const given = typeof o.args.name === 'string' ? o.args.name : undefined;
  const record: HostRecord = {
    id: newRecordId(),
    name: given ? (o.count > 1 ? `${given}-${o.index}` : given) : `${o.provider}-${shortId()}`,
    hostname: '',
    provider: o.provider,
    instance: o.instance,
    state: 'provisioning',
    recipe: { provider: o.provider, instance: o.instance, args: redact(o.args, 'drop'), ...(o.nick ? { nick: o.nick } : {}) },
    owner: core.owner,
    brokerId: core.brokerId,
    createdAt: new Date().toISOString(),
    data: {},
    pid: process.pid,
    machine: machineHostname(),
  };
  if (o.leaseMs !== undefined) record.leaseExpires = new Date(Date.now() + o.leaseMs).toISOString();
  if (o.deployment) record.deployment = o.deployment;
  return record;
}

/** Records the hosts a failed checkout left behind as kept, so a person sees and checks them in. */
export async function recordDangling(core: BrokerCore, record: HostRecord, error: ProviderError): Promise<void> {
  const at = new Date().toISOString();
  const reason = error.message.slice(0, 500);
  const kept = error.dangling.map((d): HostRecord => {
    const { connection: _c, pid: _p, machine: _m, lastError: _l, ...base } = record;
    return {
      ...base,
      id: newRecordId(),
      name: d.name,
      hostname: d.hostname ?? d.name,
      state: 'ready',
      providerId: d.providerId ?? d.name,
      createdAt: at,
      data: { ...record.data, ...redact(d.data ?? {}, 'drop'), deployFailed: true },
      kept: { reason, at },
    };
  });
  await core.store.add(kept).catch((e: unknown) =>
    core.logger.error(`could not record ${kept.length} host(s) a failed checkout left behind: ${kept.map((k) => k.name).join(', ')}`, {
      error: asError(e).message,
    }),
  );
}

/** A record for a resource a provider reported. */
export function recordOf(core: BrokerCore, d: DiscoveredHost, provider: string, instance: string): HostRecord {
  const record: HostRecord = {
    id: d.id ?? newRecordId(),
    name: d.name ?? d.hostname,
    hostname: d.hostname,
    provider,
    instance,
    state: 'ready',
    recipe: d.recipe ?? { provider, instance, args: {} },
    owner: d.owner ?? core.owner,
    brokerId: d.brokerId ?? core.brokerId,
    createdAt: d.createdAt ?? new Date().toISOString(),
    connection: d.connection,
    data: redact(d.data ?? {}, 'drop'),
  };
  if (d.providerId) record.providerId = d.providerId;
  if (d.ports) record.ports = d.ports;
  if (d.leaseExpires) record.leaseExpires = d.leaseExpires;
  return record;
}
