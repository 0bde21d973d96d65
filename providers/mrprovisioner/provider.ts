/**
 * mr-provisioner implementation: reserve a machine by query, point it at a kernel/initrd/preseed,
 * provision (netboot install) it, and give it back (power off, then unassign) on release.
 *
 * Tagging: mr-provisioner has no tags; the only free text on a reservation is the assignment's
 * `reason` (at most 140 characters). It carries `hostbroker id=<record id> broker=<broker id>`,
 * so release of a record still `provisioning` and `sync` find machines by it.
 * @module
 */
import { sshLogin } from '../../lib/ssh-login.js';
import { abortedBeforeStart } from '../../lib/concurrency.js';
import { ProviderError, UserInputError } from '../../lib/errors.js';
import { type DiscoveredHost, type ProvisionedHost, implementProvider } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { type Image, type Machine, MrProvisionerClient, type Preseed } from './client.js';
import { mrprovisioner } from './definition.js';

const REASON_MAX = 140;

/** The reservation reason for a record: the tag first, then the user's text if it fits. */
export function tagReason(record: Pick<HostRecord, 'id' | 'brokerId'>, reason?: string): string {
  const tag = `hostbroker id=${record.id} broker=${record.brokerId}`;
  if (tag.length > REASON_MAX) return `hostbroker id=${record.id}`.slice(0, REASON_MAX);
  return reason ? `${tag}; ${reason}`.slice(0, REASON_MAX) : tag;
}

/** The record id and broker id in a reservation reason, if it is one of ours. */
export function parseReason(reason: string | null | undefined): { id: string; brokerId?: string } | undefined {
  const m = /^hostbroker id=(\S+?)(?: broker=([^\s;]+))?(?:;|$)/.exec(reason ?? '');
  return m ? { id: m[1]!, brokerId: m[2] } : undefined;
}

function pickByRef<T extends { id: number; name: string; description?: string | null }>(what: string, ref: number | string, items: T[], provider: string): T {
  if (typeof ref === 'number' || /^\d+$/.test(ref)) {
    const id = Number(ref);
    const found = items.find((i) => i.id === id);
    if (!found)
      throw new ProviderError(
        provider,
        `no ${what} with id ${id} is visible to this account; list them with \`hostbroker providers mrprovisioner --describe ${what}s\`.`,
        { status: 404 },
      );
    return found;
  }
  // Uploaded files get a random suffix (`vmlinuz.1a2b3c4d`); match with or without it.
  const strip = (n: string) => n.replace(/^.*\//, '').replace(/\.[0-9a-f]{8}$/, '');
  const matches = items.filter((i) => i.name === ref || strip(i.name) === ref || i.description === ref);
  if (!matches.length) {
    const known = items.map((i) => strip(i.name)).slice(0, 10);
    throw new ProviderError(
      provider,
      `no ${what} named "${ref}" is visible to this account${known.length ? ` (some there are: ${known.join(', ')})` : ''}; upload one with the \`upload-image\` action or use its id.`,
      { status: 404 },
    );
  }
  // Several uploads of the same file: the newest (highest id) wins.
  return matches.reduce((a, b) => (b.id > a.id ? b : a));
}

async function addressOf(client: MrProvisionerClient, machine: Machine, mode: 'hostname' | 'ipv4', signal: AbortSignal): Promise<string> {
  if (mode === 'hostname' && machine.hostname) return machine.hostname;
  const interfaces = await client.interfaces(machine.id, signal);
  const ip = interfaces.map((i) => i.lease_ipv4 ?? i.configured_ipv4).find((v): v is string => !!v && v !== 'auto');
  if (ip) return ip;
  if (machine.hostname) return machine.hostname;
  // Last resort: the machine's name, which DNS often knows.
  return machine.name;
}

async function findTagged(client: MrProvisionerClient, recordId: string, signal: AbortSignal): Promise<number | undefined> {
  for (const machine of await client.machines({ signal })) {
    const assignee = await client.selfAssignee(machine.id, signal);
    if (parseReason(assignee?.reason)?.id === recordId) return machine.id;
  }
  return undefined;
}

export default implementProvider(mrprovisioner, {
  async checkout(args, target, ctx): Promise<ProvisionedHost> {
    if (ctx.signal.aborted) throw abortedBeforeStart(`checkout of ${target.record.name}`, ctx.signal);
    const client = MrProvisionerClient.fromContext(ctx);
    const { signal } = ctx;
    const machine = await client.reserve(args.query, tagReason(target.record, args.reason), signal);
    if (!machine) {
      throw new ProviderError(
        ctx.provider,
        `no free machine matches ${args.query ? `the query "${args.query}"` : 'the request'} (mr-provisioner said: no matching machine); wait for one to be released, or widen the query.`,
        { status: 404, retryable: true },
      );
    }
    ctx.logger.info(`reserved machine ${machine.name} (#${machine.id}) for ${target.record.name}`);
    try {
      const fields: Record<string, unknown> = {};
      if (args.kernel !== undefined || args.initrd !== undefined) {
        const images = await client.images(signal);
        for (const type of ['kernel', 'initrd'] as const) {
          const ref = args[type];
          if (ref !== undefined)
            fields[`${type}_id`] = pickByRef<Image>(
              type,
              ref,
              images.filter((i) => i.type.toLowerCase() === type),
              ctx.provider,
            ).id;
        }
      }
      if (args.preseed !== undefined) fields.preseed_id = pickByRef<Preseed>('preseed', args.preseed, await client.preseeds(signal), ctx.provider).id;
      if (args.kernelOptions !== undefined) fields.kernel_opts = args.kernelOptions;
      const provision = args.provision ?? (args.kernel !== undefined || machine.kernel_id != null);
      if (provision) fields.netboot_enabled = true;
      const configured = Object.keys(fields).length ? await client.updateMachine(machine.id, fields, signal) : machine;
      let state: string | undefined;
      if (provision) {
        if (configured.kernel_id == null) {
          throw new UserInputError(`machine ${machine.name} has no kernel to provision with; pass \`kernel\` (an image id or name) or \`provision: false\`.`);
        }
        state = await client.provision(machine.id, signal);
      } else if (args.power) {
        await client.power(machine.id, args.power, signal);
      }
      const hostname = await addressOf(client, configured, args.address, signal);
      const ssh = ctx.settings.ssh;
      const settings = client.settings;
      return {
        hostname,
        name: args.name,
        providerId: String(machine.id),
        connection: sshLogin(hostname, settings, ssh),
        data: {
          machine: machine.name,
          machineId: machine.id,
          ...(args.query ? { query: args.query } : {}),
          kernelId: configured.kernel_id ?? undefined,
          initrdId: configured.initrd_id ?? undefined,
          preseedId: configured.preseed_id ?? undefined,
          ...(state ? { state } : {}),
        },
      };
    } catch (error) {
      // Give the machine back now: the record may never get a providerId.
      await client.unassign(machine.id).catch((e) => ctx.logger.warn(`could not give back machine #${machine.id}: ${(e as Error).message}`));
      throw error;
    }
  },

  async release(record, ctx): Promise<void> {
    const client = MrProvisionerClient.fromContext(ctx);
    const { signal } = ctx;
    let id = record.providerId && /^\d+$/.test(record.providerId) ? Number(record.providerId) : undefined;
    id ??= await findTagged(client, record.id, signal);
    if (id === undefined) return; // Nothing of ours holds this record: already released.
    const assignee = await client.selfAssignee(id, signal);
    if (!assignee) return; // Already given back.
    const tag = parseReason(assignee.reason);
    if (tag && tag.id !== record.id) {
      // The machine was given back and reserved again for another record: leave it alone.
      ctx.logger.warn(`machine #${id} is now reserved for record ${tag.id}, not ${record.id}; not touching it.`);
      return;
    }
    if (client.settings.powerOffOnRelease) {
      try {
        await client.power(id, 'off', signal);
      } catch (error) {
        // A machine without a BMC cannot be powered off; giving it back matters more.
        ctx.logger.warn(`could not power off machine #${id} before giving it back: ${(error as Error).message}`);
      }
    }
    await client.unassign(id, signal);
  },

  async discover(ctx): Promise<DiscoveredHost[]> {
    const client = MrProvisionerClient.fromContext(ctx);
    const out: DiscoveredHost[] = [];
    for (const machine of await client.machines({ signal: ctx.signal })) {
      const tag = parseReason((await client.selfAssignee(machine.id, ctx.signal))?.reason);
      if (!tag || (tag.brokerId && tag.brokerId !== ctx.brokerId)) continue;
      const hostname = machine.hostname ?? machine.name;
      out.push({
        id: tag.id,
        brokerId: tag.brokerId ?? ctx.brokerId,
        owner: ctx.owner,
        hostname,
        name: machine.name,
        providerId: String(machine.id),
        connection: { kind: 'ssh', host: hostname, port: ctx.settings.ssh.port, username: client.settings.sshUsername ?? ctx.settings.ssh.username },
        data: { machine: machine.name, machineId: machine.id },
        recipe: { provider: ctx.provider, instance: ctx.instance, args: {} },
      });
    }
    return out;
  },

  actions: {
    async 'upload-image'(args, ctx) {
      const image = await MrProvisionerClient.fromContext(ctx).uploadImage(args, ctx.signal);
      ctx.logger.info(`uploaded ${args.path} as image #${image.id} (${image.type})`);
      return image;
    },
    async power(args, ctx) {
      const client = MrProvisionerClient.fromContext(ctx);
      const mine = await client.machines({ signal: ctx.signal });
      const machine = mine.find((m) => m.id === Number(args.machine) || m.name === String(args.machine));
      if (!machine)
        throw new UserInputError(
          `machine ${args.machine} is not assigned to you; reserve it first (you hold: ${mine.map((m) => m.name).join(', ') || 'none'}).`,
        );
      await client.power(machine.id, args.state, ctx.signal);
      return { machine: machine.name, id: machine.id, state: args.state };
    },
  },

  async describe(ctx, topic): Promise<Record<string, unknown>> {
    const client = MrProvisionerClient.fromContext(ctx);
    const out: Record<string, unknown> = {};
    if (!topic || topic === 'machines')
      out.machines = (await client.machines({ all: true, signal: ctx.signal })).map((m) => ({ id: m.id, name: m.name, hostname: m.hostname }));
    if (!topic || topic === 'images' || topic === 'kernels' || topic === 'initrds') {
      out.images = (await client.images(ctx.signal)).map((i) => ({
        id: i.id,
        name: i.name,
        type: i.type,
        description: i.description,
        knownGood: i.known_good,
      }));
    }
    if (!topic || topic === 'preseeds')
      out.preseeds = (await client.preseeds(ctx.signal)).map((p) => ({ id: p.id, name: p.name, type: p.type, description: p.description }));
    return out;
  },
});
