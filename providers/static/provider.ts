/**
 * The `static` provider's implementation. A machine is taken while a record holds its claim:
 * checkout claims the first free match through `ctx.reserve` (exclusive across every process
 * sharing the inventory), and checkin frees it with the record.
 * @module
 */
import { hostname as machineHostname } from 'node:os';
import { abortedBeforeStart } from '../../lib/concurrency.js';
import { ProviderError, UserInputError } from '../../lib/errors.js';
import { isProcessAlive } from '../../lib/identity.js';
import { implementProvider, type ProviderContext } from '../../lib/provider.js';
import type { HostRecord, SshConnection } from '../../lib/records.js';
import { expandHome, lookupSshConfig } from '../../lib/ssh-config-file.js';
import { type StaticArgs, type StaticInstance, type StaticMachine, staticProvider } from './definition.js';

/** The claim of a machine: its address (two entries for one address are one machine). */
function addressOf(m: StaticMachine): string {
  return `${m.hostname}:${m.port ?? 22}`;
}

/** The SSH connection of a machine: its own settings, then the OpenSSH config's, then the defaults. */
function connectionOf(m: StaticMachine, ctx: ProviderContext<StaticInstance>): SshConnection {
  const which = m.sshConfig ?? ctx.settings.ssh.sshConfig;
  const file = which ? lookupSshConfig(m.hostname, which, (message) => ctx.logger.warn(message)) : {};
  const privateKeyPath = m.privateKeyPath ?? (m.passwordEnv ? undefined : file.identityFile);
  const jump = m.jump ?? file.jump;
  return {
    kind: 'ssh',
    host: file.hostName ?? m.hostname,
    port: m.port ?? file.port ?? 22,
    username: m.username ?? file.user ?? ctx.settings.ssh.username,
    ...(privateKeyPath ? { privateKeyPath: expandHome(privateKeyPath) } : {}),
    ...(m.passwordEnv ? { passwordEnv: m.passwordEnv } : {}),
    ...(m.passphraseEnv ? { passphraseEnv: m.passphraseEnv } : {}),
    ...(m.agent !== undefined ? { agent: m.agent } : {}),
    ...(m.forwardAgent ? { forwardAgent: true } : {}),
    ...(jump?.length ? { jump: jump.map((h) => (h.privateKeyPath ? { ...h, privateKeyPath: expandHome(h.privateKeyPath) } : h)) } : {}),
  };
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

/** The machines of the instance and who holds each (`topic`: a machine name or group). */
async function machines(ctx: ProviderContext<StaticInstance>, topic?: string) {
  const held = await ctx.holders();
  return ctx.instanceSettings.hosts
    .filter((m) => topic === undefined || m.name === topic || m.groups.includes(topic))
    .map((m) => {
      const h = held.get(addressOf(m));
      return {
        name: m.name,
        hostname: m.hostname,
        port: m.port ?? 22,
        groups: m.groups,
        labels: m.labels,
        heldBy: h ? { owner: h.owner, record: h.id, name: h.name, since: h.createdAt } : null,
      };
    });
}

export default implementProvider(staticProvider, {
  async checkout(args, { record }, ctx) {
    if (ctx.signal.aborted) throw abortedBeforeStart(`checkout of ${record.name}`, ctx.signal);
    const all = ctx.instanceSettings.hosts;
    if (!all.length) {
      throw new UserInputError(
        `provider \`static\` (instance ${ctx.instance}) lists no machines; add them under \`static: { hosts: [{ name, hostname, username, privateKeyPath }] }\` in broker_settings.yaml.`,
      );
    }
    const matching = all.filter((m) => matches(m, args));
    if (!matching.length) {
      throw new UserInputError(
        `no static machine matches ${describeRequest(args)} (instance ${ctx.instance}); its machines: ${all.map(describeMachine).join(', ')}.`,
      );
    }
    const address = await ctx.reserve(matching.map(addressOf));
    const m = matching.find((c) => addressOf(c) === address);
    if (!m) {
      const held = await ctx.holders();
      const taken = matching.map((c) => {
        const h = held.get(addressOf(c));
        return `${c.name} by ${h ? describeHolder(h) : 'someone who has just let it go'}`;
      });
      throw new ProviderError(
        'static',
        `all ${matching.length} machine(s) matching ${describeRequest(args)} are taken: ${taken.join('; ')}. Check one in (\`hostbroker checkin <name>\`), wait, or add machines under static.hosts.`,
        { retryable: true },
      );
    }
    return {
      hostname: m.hostname,
      name: m.name,
      providerId: m.name,
      connection: connectionOf(m, ctx),
      data: { address: addressOf(m), machine: m.name, groups: m.groups, labels: m.labels },
    };
  },

  // The machine stays as it is; removing the record (the Broker does that) frees its claim.
  async release() {},

  actions: {
    machines: (args, ctx) => machines(ctx, args.group),
  },

  async describe(ctx, topic) {
    const list = await machines(ctx, topic);
    return { instance: ctx.instance, machines: list, free: list.filter((m) => !m.heldBy).length };
  },
});
