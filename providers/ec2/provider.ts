/**
 * The `ec2` provider implementation (loaded lazily by the definition).
 * One host = one RunInstances call (MinCount = MaxCount = 1) tagged with the record, so every
 * instance can be found again by its `hostbroker.id` tag, even when the process died mid-checkout.
 * @module
 */
import type { EC2Client, Instance, _InstanceType, Tag } from '@aws-sdk/client-ec2';
import { abortedBeforeStart } from '../../lib/concurrency.js';
import { ProviderError, TimeoutError } from '../../lib/errors.js';
import { type DiscoveredHost, type ImplementationOf, type ProviderContext, TAGS, implementProvider, standardTags } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { toMs } from '../../lib/settings.js';
import { type CallOptions, awsCode, callEc2, createEc2Client, loadEc2Sdk, retryPolicy, sleep } from './client.js';
import { type Ec2Instance, ec2 } from './definition.js';
import { resolveImage } from './image.js';

/** States of instances that still exist (and cost money). */
const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped'];
/** How long a resolved image name is reused (many hosts of one checkout resolve it once). */
const IMAGE_CACHE_MS = 5 * 60_000;

/** What the provider keeps in `record.data` (no secrets). */
export type Ec2RecordData = {
  region?: string;
  instanceId: string;
  imageId: string;
  instanceType: string;
  subnetId?: string;
  availabilityZone?: string;
  spot: boolean;
  publicIp?: string;
  privateIp?: string;
  keyName?: string;
};

type Context = ProviderContext<Ec2Instance>;

/** Creates an `ec2` provider implementation (each has its own client and image caches). */
export function createEc2Provider(): ImplementationOf<typeof ec2> {
  const clients = new Map<string, Promise<EC2Client>>();
  const images = new Map<string, { at: number; id: Promise<string> }>();

  function clientFor(settings: Ec2Instance, region: string | undefined, ctx: Context): Promise<EC2Client> {
    const key = JSON.stringify([ctx.instance, region ?? settings.region, settings.profile, settings.endpoint, settings.accessKeyId]);
    let client = clients.get(key);
    if (!client) {
      client = createEc2Client(settings, region);
      clients.set(key, client);
      client.catch(() => clients.delete(key));
    }
    return client;
  }

  function callOptions(settings: Ec2Instance, ctx: Context, what: string): CallOptions {
    return { what, policy: retryPolicy(settings), logger: ctx.logger, signal: ctx.signal };
  }

  async function imageId(image: string, client: EC2Client, region: string | undefined, settings: Ec2Instance, ctx: Context): Promise<string> {
    const key = `${region ?? ''}|${settings.imageOwners.join(',')}|${image}`;
    const hit = images.get(key);
    if (hit && Date.now() - hit.at < IMAGE_CACHE_MS) return hit.id;
    const id = resolveImage(image, { client, region, owners: settings.imageOwners, policy: retryPolicy(settings), logger: ctx.logger, signal: ctx.signal });
    images.set(key, { at: Date.now(), id });
    id.catch(() => images.delete(key));
    return id;
  }

  /** Live instances carrying `tag` = `value`. */
  async function findByTag(client: EC2Client, tag: string, value: string, settings: Ec2Instance, ctx: Context): Promise<Instance[]> {
    const sdk = await loadEc2Sdk();
    const found: Instance[] = [];
    let NextToken: string | undefined;
    do {
      const out = await callEc2(
        () =>
          client.send(
            new sdk.DescribeInstancesCommand({
              Filters: [
                { Name: `tag:${tag}`, Values: [value] },
                { Name: 'instance-state-name', Values: LIVE_STATES },
              ],
              ...(NextToken ? { NextToken } : {}),
            }),
            { abortSignal: ctx.signal },
          ),
        callOptions(settings, ctx, `list instances tagged ${tag}=${value}`),
      );
      for (const r of out.Reservations ?? []) found.push(...(r.Instances ?? []));
      NextToken = out.NextToken;
    } while (NextToken);
    return found;
  }

  async function terminate(client: EC2Client, ids: string[], settings: Ec2Instance, ctx: Context): Promise<void> {
    if (ids.length === 0) return;
    const sdk = await loadEc2Sdk();
    try {
      await callEc2(
        () => client.send(new sdk.TerminateInstancesCommand({ InstanceIds: ids }), { abortSignal: ctx.signal }),
        callOptions(settings, ctx, `terminate ${ids.join(', ')}`),
      );
    } catch (error) {
      // Already gone is what we wanted. With several ids, one missing one fails the whole call.
      const code = error instanceof ProviderError ? String(error.status) : awsCode(error);
      if (code !== 'InvalidInstanceID.NotFound') throw error;
      if (ids.length > 1) for (const id of ids) await terminate(client, [id], settings, ctx);
    }
  }

  /** Polls until the instance runs and has the wanted address; fails on terminal states. */
  async function waitRunning(client: EC2Client, id: string, wantPublic: boolean, settings: Ec2Instance, ctx: Context): Promise<Instance> {
    const sdk = await loadEc2Sdk();
    const limit = toMs(settings.runningTimeout);
    const interval = toMs(settings.pollInterval);
    const deadline = Date.now() + limit;
    let last: Instance | undefined;
    let runningWithoutPublic = 0;
    for (;;) {
      try {
        const out = await callEc2(
          () => client.send(new sdk.DescribeInstancesCommand({ InstanceIds: [id] }), { abortSignal: ctx.signal }),
          callOptions(settings, ctx, `describe ${id}`),
        );
        last = out.Reservations?.[0]?.Instances?.[0];
      } catch (error) {
        // Right after RunInstances, EC2 may not know the id yet (eventual consistency).
        if (!(error instanceof ProviderError && error.status === 'InvalidInstanceID.NotFound')) throw error;
      }
      const state = last?.State?.Name;
      if (state === 'running' && (last?.PrivateIpAddress || last?.PublicIpAddress)) {
        // A public IP normally comes with `running`; a subnet without them never gives one.
        if (!wantPublic || last?.PublicIpAddress || ++runningWithoutPublic >= 3) return last!;
      }
      if (state === 'shutting-down' || state === 'terminated' || state === 'stopping' || state === 'stopped') {
        const reason = last?.StateReason ? `${last.StateReason.Code}: ${last.StateReason.Message}` : 'no reason given';
        throw new ProviderError(
          'ec2',
          `instance ${id} went to ${state} while starting (${reason}); check the image, instance type and (for spot) the capacity, then try again.`,
          {
            ...(last?.StateReason?.Code ? { status: last.StateReason.Code } : {}),
            retryable: /capacity/i.test(reason),
          },
        );
      }
      if (Date.now() + interval > deadline) {
        throw new TimeoutError(
          `[ec2] instance ${id} was still ${state ?? 'unknown to EC2'} after ${Math.round(limit / 1000)} s; it is being terminated. Raise runningTimeout in the ec2 settings if your images start slowly.`,
          limit,
        );
      }
      await sleep(interval, ctx.signal);
    }
  }

  function toDiscovered(instance: Instance, ctx: Context, address: 'public' | 'private'): DiscoveredHost {
    const tags = tagMap(instance.Tags);
    const host: DiscoveredHost = {
      hostname: pickAddress(instance, address) ?? '',
      name: tags[TAGS.name] ?? tags.Name ?? instance.InstanceId ?? '',
      providerId: instance.InstanceId!,
      connection: { kind: 'ssh', host: pickAddress(instance, address) ?? '', port: 22, username: ctx.settings.ssh.username },
      data: recordData(instance, undefined),
    };
    if (tags[TAGS.id]) host.id = tags[TAGS.id];
    if (tags[TAGS.owner]) host.owner = tags[TAGS.owner];
    if (tags[TAGS.broker]) host.brokerId = tags[TAGS.broker];
    if (tags[TAGS.lease]) host.leaseExpires = tags[TAGS.lease];
    if (instance.LaunchTime) host.createdAt = new Date(instance.LaunchTime).toISOString();
    if (instance.ImageId)
      host.recipe = {
        provider: 'ec2',
        instance: ctx.instance,
        args: { image: instance.ImageId, ...(instance.InstanceType ? { instanceType: instance.InstanceType } : {}) },
      };
    return host;
  }

  async function instancesOf(record: HostRecord, client: EC2Client, settings: Ec2Instance, ctx: Context): Promise<string[]> {
    if (record.providerId) return [record.providerId];
    return (await findByTag(client, TAGS.id, record.id, settings, ctx)).map((i) => i.InstanceId!).filter(Boolean);
  }

  return implementProvider(ec2, {
    async checkout(args, target, ctx) {
      if (ctx.signal.aborted) throw abortedBeforeStart(`checkout of ${target.record.name}`, ctx.signal);
      const sdk = await loadEc2Sdk();
      const settings = ctx.instanceSettings;
      const client = await clientFor(settings, args.region ?? settings.region, ctx);
      // Recorded so checkin reaches the same region whatever the settings say later.
      const region = args.region ?? settings.region ?? (await client.config.region().catch(() => undefined));
      const { record } = target;
      const image = await imageId(args.image, client, region, settings, ctx);
      const subnetArg = args.subnet ?? settings.subnet;
      const subnets = subnetArg === undefined ? [] : Array.isArray(subnetArg) ? subnetArg : [subnetArg];
      const address = args.address ?? settings.address;
      const securityGroups = args.securityGroups ?? settings.securityGroups;
      const keyName = args.keyName ?? settings.keyName;
      const tags: Tag[] = Object.entries({ ...args.tags, Name: record.name, ...standardTags(record) }).map(([Key, Value]) => ({ Key, Value }));
      // Host i goes to subnet i mod n; a capacity error moves it on to the next subnet (zone).
      let subnetIndex = subnets.length ? target.index % subnets.length : 0;
      const run = await callEc2(
        () =>
          client.send(
            new sdk.RunInstancesCommand({
              ImageId: image,
              InstanceType: args.instanceType as _InstanceType,
              MinCount: 1,
              MaxCount: 1,
              // Same token on a retried call = the same instance, never a second one.
              ClientToken: `hb-${record.id}-${subnetIndex}`.slice(0, 64),
              ...(subnets.length ? { SubnetId: subnets[subnetIndex] } : {}),
              ...(securityGroups?.length ? { SecurityGroupIds: securityGroups } : {}),
              ...(keyName ? { KeyName: keyName } : {}),
              ...(args.userData !== undefined ? { UserData: Buffer.from(args.userData).toString('base64') } : {}),
              ...(args.spot
                ? {
                    InstanceMarketOptions: {
                      MarketType: 'spot',
                      SpotOptions: {
                        SpotInstanceType: 'one-time',
                        InstanceInterruptionBehavior: 'terminate',
                        ...(typeof args.spot === 'object' ? { MaxPrice: args.spot.maxPrice } : {}),
                      },
                    },
                  }
                : {}),
              TagSpecifications: [
                { ResourceType: 'instance', Tags: tags },
                { ResourceType: 'volume', Tags: tags },
              ],
            }),
            { abortSignal: ctx.signal },
          ),
        {
          ...callOptions(settings, ctx, `start an instance of ${args.instanceType} from ${image}`),
          onCapacity: () => {
            if (subnets.length > 1) subnetIndex = (subnetIndex + 1) % subnets.length;
          },
        },
      );
      const id = run.Instances?.[0]?.InstanceId;
      if (!id)
        throw new ProviderError(
          'ec2',
          `RunInstances answered without an instance id for ${record.name}; look for instances tagged ${TAGS.id}=${record.id} and report this.`,
        );
      ctx.logger.info(`ec2: started ${id} for ${record.name}`, { region, image, subnet: subnets[subnetIndex] });
      let instance: Instance;
      try {
        instance = await waitRunning(client, id, address === 'public', settings, ctx);
      } catch (error) {
        await terminate(client, [id], settings, { ...ctx, signal: new AbortController().signal }).catch((e: unknown) =>
          ctx.logger.warn(`ec2: could not terminate ${id} after a failed start; it is tagged ${TAGS.id}=${record.id} for checkin or sync`, {
            error: String(e),
          }),
        );
        throw error;
      }
      const hostname = pickAddress(instance, address)!;
      const privateKeyPath = args.privateKeyPath ?? settings.privateKeyPath ?? ctx.settings.ssh.privateKeyPath;
      return {
        hostname,
        name: record.name,
        providerId: id,
        connection: {
          kind: 'ssh',
          host: hostname,
          port: 22,
          username: args.username ?? settings.username ?? ctx.settings.ssh.username,
          ...(privateKeyPath ? { privateKeyPath } : {}),
        },
        data: { ...recordData(instance, region), spot: Boolean(args.spot) } satisfies Ec2RecordData,
      };
    },

    async release(record, ctx) {
      const settings = ctx.instanceSettings;
      const region = typeof record.data.region === 'string' ? record.data.region : settings.region;
      const client = await clientFor(settings, region, ctx);
      await terminate(client, await instancesOf(record, client, settings, ctx), settings, ctx);
    },

    async extend(record, leaseExpires, ctx) {
      const sdk = await loadEc2Sdk();
      const settings = ctx.instanceSettings;
      const region = typeof record.data.region === 'string' ? record.data.region : settings.region;
      const client = await clientFor(settings, region, ctx);
      const ids = await instancesOf(record, client, settings, ctx);
      if (ids.length === 0) throw new ProviderError('ec2', `no instance of ${record.name} (${record.id}) exists any more; check it in to remove the record.`);
      await callEc2(
        () => client.send(new sdk.CreateTagsCommand({ Resources: ids, Tags: [{ Key: TAGS.lease, Value: leaseExpires }] }), { abortSignal: ctx.signal }),
        callOptions(settings, ctx, `update the lease tag of ${ids.join(', ')}`),
      );
    },

    async discover(ctx) {
      const settings = ctx.instanceSettings;
      const client = await clientFor(settings, settings.region, ctx);
      const found = await findByTag(client, TAGS.broker, ctx.brokerId, settings, ctx);
      return found.map((i) => toDiscovered(i, ctx, settings.address));
    },

    async close() {
      const all = [...clients.values()];
      clients.clear();
      images.clear();
      for (const c of await Promise.allSettled(all)) if (c.status === 'fulfilled') c.value.destroy();
    },
  });
}

function tagMap(tags: Tag[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tags ?? []) if (t.Key !== undefined && t.Value !== undefined) out[t.Key] = t.Value;
  return out;
}

function pickAddress(instance: Instance, address: 'public' | 'private'): string | undefined {
  return address === 'public' ? (instance.PublicIpAddress ?? instance.PrivateIpAddress) : (instance.PrivateIpAddress ?? instance.PublicIpAddress);
}

function recordData(instance: Instance, region: string | undefined): Ec2RecordData {
  const data: Ec2RecordData = {
    instanceId: instance.InstanceId!,
    imageId: instance.ImageId ?? '',
    instanceType: instance.InstanceType ?? '',
    spot: instance.InstanceLifecycle === 'spot',
  };
  if (region) data.region = region;
  if (instance.SubnetId) data.subnetId = instance.SubnetId;
  if (instance.Placement?.AvailabilityZone) data.availabilityZone = instance.Placement.AvailabilityZone;
  if (instance.PublicIpAddress) data.publicIp = instance.PublicIpAddress;
  if (instance.PrivateIpAddress) data.privateIp = instance.PrivateIpAddress;
  if (instance.KeyName) data.keyName = instance.KeyName;
  return data;
}

/** The provider the registry loads. */
export default createEc2Provider();
