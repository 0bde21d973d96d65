/**
 * The `static` provider's implementation. The reservation *is* the inventory record: a machine is
 * taken while some static record (of any process) carries its address in `data.address`. The
 * choice and the reservation happen in one `inventory.update`, i.e. under the cross-process lock.
 * @module
 */
import { homedir, hostname as machineHostname } from 'node:os';
import { join } from 'node:path';
import { ProviderError, UserInputError } from '../../lib/errors.js';
import { isProcessAlive } from '../../lib/identity.js';
import type { ProviderContext, ProviderImplementation } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import type { StaticArgs, StaticInstance, StaticMachine } from './definition.js';

/** Identity of a machine across instances: two instances listing one box still share it. */
function addressOf(m: StaticMachine): string {
  return `${m.hostname}:${m.port}`;
}

/** `~/x` in settings means the user's home, as in OpenSSH. */
function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;
}

function machinesOf(ctx: ProviderContext): StaticMachine[] {
  return (ctx.instanceSettings as StaticInstance).hosts ?? [];
}

function matches(m: StaticMachine, args: StaticArgs): boolean {
  if (args.name !== undefined && m.name !== args.name) return false;
  if (args.group !== undefined && !m.groups.includes(args.group)) return false;
  for (const [k, v] of Object.entries(args.labels ?? {})) if (m.labels[k] !== v) return false;
  return true;
}

function describeRequest(args: StaticArgs): string {
  const parts = [
    ...(args.name !== undefined ? [`name=${args.name}`] : []),
    ...(args.group !== undefined ? [`group=${args.group}`] : []),
    ...Object.entries(args.labels ?? {}).map(([k, v]) => `label ${k}=${v}`),
  ];
  return parts.length ? parts.join(', ') : 'any machine';
}

function describeMachine(m: StaticMachine): string {
  const labels = Object.entries(m.labels).map(([k, v]) => `${k}=${v}`);
  const extra = [...(m.groups.length ? [`groups ${m.groups.join('/')}`] : []), ...(labels.length ? [`labels ${labels.join(',')}`] : [])];
  return extra.length ? `${m.name} (${extra.join('; ')})` : m.name;
}

function describeHolder(r: HostRecord): string {
  const gone = r.state === 'provisioning' && r.machine === machineHostname() && r.pid !== undefined && !isProcessAlive(r.pid);
  return `${r.owner} (record ${r.id}${r.deployment ? `, deployment ${r.deployment}` : ''}, since ${r.createdAt}${gone ? '; its process is gone: `hostbroker reap` frees it' : ''})`;
}

/** Address → the static record holding it. */
function holders(records: readonly HostRecord[], except?: string): Map<string, HostRecord> {
  const out = new Map<string, HostRecord>();
  for (const r of records) if (r.provider === 'static' && r.id !== except && typeof r.data.address === 'string') out.set(r.data.address, r);
  return out;
}

const provider: ProviderImplementation<StaticArgs> = {
  async checkout(args, target, ctx) {
    const machines = machinesOf(ctx);
    if (!machines.length) {
      throw new UserInputError(`provider \`static\` (instance ${ctx.instance}) lists no machines; add them under \`static: { hosts: [{ name, hostname, username, privateKeyPath }] }\` in broker_settings.yaml.`);
    }
    const matching = machines.filter((m) => matches(m, args));
    if (!matching.length) {
      throw new UserInputError(`no static machine matches ${describeRequest(args)} (instance ${ctx.instance}); its machines: ${machines.map(describeMachine).join(', ')}.`);
    }
    const outcome = await ctx.inventory.update((data) => {
      const mine = data.hosts.find((h) => h.id === target.record.id);
      if (!mine) return { kind: 'removed' as const };
      const held = holders(data.hosts, mine.id);
      const free = matching.find((m) => !held.has(addressOf(m)));
      if (!free) return { kind: 'taken' as const, taken: matching.map((m) => `${m.name} by ${describeHolder(held.get(addressOf(m))!)}`) };
      // Reserve in the same locked update that chose it.
      mine.hostname = free.hostname;
      mine.providerId = free.name;
      mine.data = { ...mine.data, address: addressOf(free), machine: free.name };
      return { kind: 'reserved' as const, machine: free };
    });
    if (outcome.kind === 'removed') throw new ProviderError('static', `the record ${target.record.id} was checked in while a machine was being chosen; nothing was reserved.`);
    if (outcome.kind === 'taken') {
      throw new ProviderError('static', `all ${matching.length} machine(s) matching ${describeRequest(args)} are taken: ${outcome.taken.join('; ')}. Check one in (\`hostbroker checkin <name>\`), wait, or add machines under static.hosts.`, { retryable: true });
    }
    const m = outcome.machine;
    return {
      hostname: m.hostname,
      name: m.name,
      providerId: m.name,
      connection: {
        kind: 'ssh',
        host: m.hostname,
        port: m.port,
        username: m.username ?? ctx.settings.ssh.username,
        ...(m.privateKeyPath ? { privateKeyPath: expandHome(m.privateKeyPath) } : {}),
        ...(m.passwordEnv ? { passwordEnv: m.passwordEnv } : {}),
      },
      data: { address: addressOf(m), machine: m.name, groups: m.groups, labels: m.labels },
    };
  },

  // The machine stays as it is; removing the record (the Broker does that) frees it.
  async release() {},

  async execute(action, args, ctx) {
    if (action !== 'machines') throw new UserInputError(`provider \`static\` has no action \`${action}\`.`);
    return (await provider.describe!(ctx, typeof args.group === 'string' ? args.group : undefined)).machines;
  },

  async describe(ctx, topic) {
    const held = holders(await ctx.inventory.hosts());
    const machines = machinesOf(ctx)
      .filter((m) => topic === undefined || m.name === topic || m.groups.includes(topic))
      .map((m) => {
        const h = held.get(addressOf(m));
        return { name: m.name, hostname: m.hostname, port: m.port, groups: m.groups, labels: m.labels, heldBy: h ? { owner: h.owner, record: h.id, name: h.name, since: h.createdAt } : null };
      });
    return { instance: ctx.instance, machines, free: machines.filter((m) => !m.heldBy).length };
  },
};

export default provider;
