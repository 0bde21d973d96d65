/**
 * The `openstack` provider implementation: one Nova server per host, tagged with the record in
 * its metadata, made again when it goes to ERROR (up to `maxRetry`), with an optional floating IP
 * that is released with it.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { abortedBeforeStart } from '../../lib/concurrency.js';
import { ProviderError, TimeoutError, UserInputError, messageOf } from '../../lib/errors.js';
import { sleep } from '../../lib/http.js';
import {
  type DiscoveredHost,
  type ImplementationOf,
  type ProviderContext,
  type ProvisionedHost,
  TAGS,
  implementProvider,
  standardTags,
} from '../../lib/provider.js';
import type { HostRecord, Recipe, SshConnection } from '../../lib/records.js';
import { redact } from '../../lib/secrets.js';
import { toMs } from '../../lib/settings.js';
import { Compute, type ServerCreate } from './compute.js';
import { type ConfigSources, processSources, resolveCloud } from './config.js';
import { type OpenStackArgs, type OpenStackInstance, openstack } from './definition.js';
import { Images } from './image.js';
import { KeystoneSession } from './keystone.js';
import { Networks } from './network.js';
import type { Flavor, Image, Network, Server } from './schemas.js';

const PROVIDER = 'openstack';
/** Extra metadata keys (beside the standard tags) that let `sync` on another machine rebuild a record. */
const META = { user: 'hostbroker.user', instance: 'hostbroker.instance', recipe: 'hostbroker.recipe' } as const;
/** Name and id lookups are reused this long (many hosts of one checkout ask the same). */
const LOOKUP_TTL_MS = 5 * 60_000;
/** A passed quota check serves the rest of its checkout this long. */
const QUOTA_REUSE_MS = 10 * 60_000;

/** Options of {@link createOpenStackProvider}; tests use them, users rarely need to. */
export interface OpenStackProviderOptions {
  /** Environment, working and home directory used to find credentials. */
  sources?: ConfigSources;
  fetch?: typeof fetch;
  /** Clock for token expiry and leases (tests move it); deadlines use real time. */
  now?: () => number;
}

type Context = ProviderContext<OpenStackInstance>;

/** Everything one call needs. */
interface Clients {
  key: string;
  settings: OpenStackInstance;
  session: KeystoneSession;
  compute: Compute;
  images: Images;
  networks: Networks;
}

/** Makes an `openstack` provider implementation (the default export uses the real process). */
export function createOpenStackProvider(options: OpenStackProviderOptions = {}): ImplementationOf<typeof openstack> {
  const sessions = new Map<string, KeystoneSession>();
  const lookups = new Map<string, { at: number; value: Promise<unknown> }>();
  const quotaChecks = new Map<string, { takers: number; at: number; value: Promise<void> }>();
  const now = () => (options.now ?? Date.now)();

  function clients(ctx: Context): Clients {
    const settings = ctx.instanceSettings;
    const cloud = resolveCloud(settings, options.sources ?? processSources(), ctx.directory);
    const a = cloud.auth;
    const key = [
      cloud.authUrl,
      a.user_id ?? a.username,
      a.user_domain_id ?? a.user_domain_name,
      a.project_id ?? a.project_name,
      a.application_credential_id ?? a.application_credential_name,
      cloud.regionName,
      cloud.interface,
      cloud.tls.caFile,
      cloud.tls.insecure,
    ].join('|');
    let session = sessions.get(key);
    if (!session) {
      session = new KeystoneSession({
        cloud,
        fetch: options.fetch,
        now,
        timeoutMs: toMs(settings.requestTimeout),
        retries: settings.httpRetries,
        retryDelayMs: toMs(settings.retryDelay),
        logger: ctx.logger,
      });
      sessions.set(key, session);
    }
    return {
      key,
      settings,
      session,
      compute: new Compute(session.service('compute')),
      images: new Images(session.service('image')),
      networks: new Networks(session.service('network')),
    };
  }

  /**
   * Reuses a lookup for a while; a failed one is forgotten at once. Shared lookups take no
   * signal: one host's cancelled checkout must not fail the others'.
   */
  function cached<T>(key: string, load: () => Promise<T>): Promise<T> {
    const hit = lookups.get(key);
    if (hit && Date.now() - hit.at < LOOKUP_TTL_MS) return hit.value as Promise<T>;
    const value = load();
    lookups.set(key, { at: Date.now(), value });
    value.catch(() => lookups.delete(key));
    return value;
  }

  /**
   * One quota check per multi-host checkout: the first of its calls reads the limits, the others
   * wait for the same answer, so a request that cannot fit fails before any server is made. A
   * check made later (the first one failed or is old) needs room only for the hosts from this
   * index on, since the earlier ones already count as used.
   */
  function quotaCheckOnce(c: Clients, flavor: Flavor, target: { index: number; count: number }): Promise<void> {
    const key = `${c.key}|${flavor.id}|${target.count}`;
    let entry = quotaChecks.get(key);
    if (!entry || Date.now() - entry.at > QUOTA_REUSE_MS) {
      const fresh = { takers: 0, at: Date.now(), value: checkQuota(c.compute, flavor, target.count - target.index) };
      // A failed check is not reused by hosts that start later: they check again.
      fresh.value.catch(() => quotaChecks.get(key) === fresh && quotaChecks.delete(key));
      quotaChecks.set(key, fresh);
      entry = fresh;
    }
    entry.takers++;
    if (entry.takers >= target.count) quotaChecks.delete(key);
    return entry.value;
  }

  async function resolveNetworks(c: Clients, names: string[]): Promise<Network[]> {
    return Promise.all(names.map((n) => cached(`${c.key}|network|${n}`, () => c.networks.find(n))));
  }

  async function ensureKeypair(c: Clients, keyName: string, publicKeyPath: string): Promise<void> {
    await cached(`${c.key}|keypair|${keyName}`, async () => {
      if (await c.compute.hasKeypair(keyName)) return;
      let publicKey: string;
      try {
        publicKey = (await readFile(publicKeyPath, 'utf8')).trim();
      } catch (error) {
        throw new UserInputError(`openstack: cannot read publicKeyPath ${publicKeyPath} (${messageOf(error)}); point it at a .pub file.`, { cause: error });
      }
      try {
        await c.compute.importKeypair(keyName, publicKey);
      } catch (error) {
        // Another process imported it meanwhile.
        if ((error as ProviderError).status !== 409) throw error;
      }
    });
  }

  /** Creates a server; after a 5xx the POST may have been done, so look for it before trying again. */
  async function createServer(c: Clients, body: ServerCreate, record: HostRecord, discarded: Set<string>, signal: AbortSignal): Promise<string> {
    let delay = toMs(c.settings.retryDelay);
    for (let attempt = 0; ; attempt++) {
      try {
        return await c.compute.createServer(body, signal);
      } catch (error) {
        if (!(error as ProviderError).retryable || attempt >= c.settings.httpRetries || signal.aborted) throw error;
        const made = (await c.compute.listServers(signal)).find((s) => s.metadata[TAGS.id] === record.id && !discarded.has(s.id) && s.status !== 'DELETED');
        if (made) return made.id;
        await sleep(delay, signal);
        delay *= 2;
      }
    }
  }

  /** Polls until ACTIVE or ERROR (returned), or throws on timeout, abort or disappearance. */
  async function waitSettled(c: Clients, id: string, name: string, signal: AbortSignal): Promise<Server> {
    const limit = toMs(c.settings.activeTimeout);
    const interval = toMs(c.settings.pollInterval);
    const deadline = Date.now() + limit;
    let last = 'BUILD';
    for (;;) {
      if (signal.aborted) throw new ProviderError(PROVIDER, `checkout of server ${name} (${id}) was cancelled while it was ${last}.`, { cause: signal.reason });
      const server = await c.compute.getServer(id, signal);
      if (!server)
        throw new ProviderError(PROVIDER, `server ${name} (${id}) disappeared while it was ${last}; someone deleted it. Try again.`, { retryable: true });
      last = server.status;
      if (server.status === 'ACTIVE' || server.status === 'ERROR') return server;
      if (server.status === 'DELETED' || server.status === 'SOFT_DELETED') {
        throw new ProviderError(PROVIDER, `server ${name} (${id}) was deleted while it was being built. Try again.`, { retryable: true });
      }
      if (Date.now() >= deadline) {
        throw new TimeoutError(
          `[openstack] server ${name} (${id}) did not become ACTIVE within ${Math.round(limit / 1000)} s (still ${last}); raise \`activeTimeout\` in the openstack settings, or ask the cloud admins why builds are slow.`,
          limit,
        );
      }
      await sleep(interval, signal);
    }
  }

  /** Deletes a server and waits (bounded) until Nova no longer shows it, so its quota is free. */
  async function deleteAndWait(c: Clients, id: string): Promise<void> {
    await c.compute.deleteServer(id);
    const deadline = Date.now() + toMs(c.settings.deleteTimeout);
    const interval = toMs(c.settings.pollInterval);
    while (Date.now() < deadline) {
      const server = await c.compute.getServer(id);
      if (!server || server.status === 'DELETED') return;
      await sleep(interval);
    }
  }

  /** Best-effort removal of what a failed checkout made (never hides the original error). */
  async function discard(c: Clients, ctx: Context, serverId: string, floatingIpId?: string): Promise<void> {
    try {
      if (floatingIpId) await c.networks.deleteFloatingIp(floatingIpId);
      await c.compute.deleteServer(serverId);
    } catch (error) {
      ctx.logger.warn(
        `openstack: could not delete server ${serverId} after a failed checkout (${messageOf(error)}); \`checkin\` or \`sync\` will find it by its metadata.`,
      );
    }
  }

  async function discardByRecord(c: Clients, ctx: Context, recordId: string, skip: Set<string>): Promise<void> {
    try {
      for (const server of await c.compute.listServers()) {
        if (server.metadata[TAGS.id] === recordId && !skip.has(server.id)) await discard(c, ctx, server.id);
      }
    } catch (error) {
      ctx.logger.warn(
        `openstack: could not look for servers of record ${recordId} after a failed create (${messageOf(error)}); \`checkin\` or \`sync\` will find them.`,
      );
    }
  }

  async function floatingIp(c: Clients, args: OpenStackArgs, server: Server, firstNetwork: Network | undefined, record: HostRecord, signal: AbortSignal) {
    const external = await cached(`${c.key}|external|${args.floatingNetwork ?? c.settings.floatingNetwork ?? ''}`, () =>
      c.networks.external(args.floatingNetwork ?? c.settings.floatingNetwork),
    );
    const ports = await c.networks.portsOf(server.id, signal);
    const port = ports.find((p) => p.network_id === firstNetwork?.id) ?? ports[0];
    if (!port) throw new ProviderError(PROVIDER, `server ${server.name} (${server.id}) has no port to attach a floating IP to; give it a \`network\`.`);
    return c.networks.createFloatingIp(external.id, port.id, floatingDescription(record.id), signal);
  }

  async function serversOfRecord(c: Clients, record: HostRecord, signal?: AbortSignal): Promise<string[]> {
    if (record.providerId) return [record.providerId];
    // Still provisioning when its process died: the server, if any, carries the record id.
    return (await c.compute.listServers(signal)).filter((s) => s.metadata[TAGS.id] === record.id).map((s) => s.id);
  }

  async function removeServer(c: Clients, serverIds: string[], recordId: string | undefined, floatingIds: string[], withFloating: boolean): Promise<void> {
    const fips = new Set(floatingIds);
    if (withFloating && recordId) for (const f of await c.networks.floatingIpsDescribed(floatingDescription(recordId))) fips.add(f.id);
    for (const id of serverIds) await c.compute.deleteServer(id);
    for (const id of fips) await c.networks.deleteFloatingIp(id);
  }

  function discovered(server: Server, ctx: Context, settings: OpenStackInstance): DiscoveredHost {
    const m = server.metadata;
    const floating = Object.values(server.addresses)
      .flat()
      .find((a) => a['OS-EXT-IPS:type'] === 'floating')?.addr;
    const connection: SshConnection = {
      kind: 'ssh',
      host: floating ?? addressOf(server, []) ?? '',
      port: ctx.settings.ssh.port,
      username: m[META.user] ?? settings.username ?? ctx.settings.ssh.username,
    };
    const keyPath = settings.privateKeyPath ?? ctx.settings.ssh.privateKeyPath;
    if (keyPath) connection.privateKeyPath = keyPath;
    return {
      id: m[TAGS.id],
      name: m[TAGS.name] ?? server.name,
      hostname: connection.host,
      providerId: server.id,
      owner: m[TAGS.owner],
      brokerId: m[TAGS.broker],
      createdAt: server.created,
      leaseExpires: m[TAGS.lease],
      recipe: recipeFrom(m),
      connection,
      data: { serverId: server.id, status: server.status },
    };
  }

  return implementProvider(openstack, {
    async checkout(args, target, ctx) {
      if (ctx.signal.aborted) throw abortedBeforeStart(`checkout of ${target.record.name}`, ctx.signal);
      const c = clients(ctx);
      const s = c.settings;
      const { record } = target;
      const signal = ctx.signal;
      const imageName = args.image ?? s.image;
      const flavorName = args.flavor ?? s.flavor;
      if (!imageName) throw new UserInputError('openstack: no image; pass `image` (a Glance image name or id) or set `image` in the openstack settings.');
      if (!flavorName) throw new UserInputError('openstack: no flavor; pass `flavor` (a Nova flavor name or id) or set `flavor` in the openstack settings.');
      const networkNames = toList(args.network ?? s.network);
      const keyName = args.keyName ?? s.keyName;
      const publicKeyPath = args.publicKeyPath ?? s.publicKeyPath;
      if (publicKeyPath && !keyName) throw new UserInputError('openstack: `publicKeyPath` needs `keyName`, the name of the key pair to import it as.');

      const [image, flavor, networks] = await Promise.all([
        cached<Image>(`${c.key}|image|${imageName}`, () => c.images.find(imageName)),
        cached<Flavor>(`${c.key}|flavor|${flavorName}`, () => c.compute.findFlavor(flavorName)),
        resolveNetworks(c, networkNames),
      ]);
      if (target.count > 1 && s.quotaCheck) await quotaCheckOnce(c, flavor, target);
      if (keyName && publicKeyPath) await ensureKeypair(c, keyName, publicKeyPath);

      const username = args.username ?? s.username ?? ctx.settings.ssh.username;
      const privateKeyPath = args.privateKeyPath ?? s.privateKeyPath ?? ctx.settings.ssh.privateKeyPath;
      const metadata: Record<string, string> = { ...args.metadata, ...standardTags(record), [META.user]: username, [META.instance]: ctx.instance };
      const recipe = JSON.stringify({ instance: ctx.instance, args: recipeArgs(args) });
      if (recipe.length <= 255) metadata[META.recipe] = recipe;

      const body: ServerCreate = { name: record.name, imageRef: image.id, flavorRef: flavor.id, metadata };
      if (networks.length) body.networks = networks.map((n) => ({ uuid: n.id }));
      if (keyName) body.key_name = keyName;
      if (args.userData !== undefined) body.user_data = Buffer.from(args.userData).toString('base64');
      const configDrive = args.configDrive ?? s.configDrive;
      if (configDrive !== undefined) body.config_drive = configDrive;
      const groups = args.securityGroups ?? s.securityGroups;
      if (groups?.length) body.security_groups = groups.map((name) => ({ name }));
      const zone = args.availabilityZone ?? s.availabilityZone;
      if (zone) body.availability_zone = zone;

      const maxRetry = args.maxRetry ?? s.maxRetry;
      const faults: string[] = [];
      const discarded = new Set<string>();
      for (let attempt = 0; attempt <= maxRetry; attempt++) {
        let id: string;
        try {
          id = await createServer(c, body, record, discarded, signal);
        } catch (error) {
          // Cancelled or failed without an answer: Nova may have made the server anyway.
          if (signal.aborted || (error as ProviderError).retryable) await discardByRecord(c, ctx, record.id, discarded);
          throw error;
        }
        ctx.logger.info(`openstack: creating server ${record.name} (${id}), image ${image.name ?? image.id}, flavor ${flavor.name}`);
        let server: Server;
        try {
          server = await waitSettled(c, id, record.name, signal);
        } catch (error) {
          await discard(c, ctx, id);
          throw error;
        }
        if (server.status === 'ERROR') {
          const fault = server.fault?.message || 'Nova gave no fault message';
          faults.push(fault);
          discarded.add(id);
          ctx.logger.warn(
            `openstack: server ${record.name} (${id}) went to ERROR: ${fault}; deleting it${attempt < maxRetry ? ` and trying again (${attempt + 1} of ${maxRetry})` : ''}.`,
          );
          await deleteAndWait(c, id);
          continue;
        }
        let fip: { id: string; floating_ip_address: string } | undefined;
        if (args.floatingIp ?? s.floatingIp) {
          try {
            fip = await floatingIp(c, args, server, networks[0], record, signal);
          } catch (error) {
            await discard(c, ctx, id);
            throw error;
          }
        }
        const address =
          fip?.floating_ip_address ??
          addressOf(
            server,
            networks.map((n) => n.name),
          );
        if (!address) {
          await discard(c, ctx, id, fip?.id);
          throw new ProviderError(PROVIDER, `server ${record.name} (${id}) is ACTIVE but has no IP address; give it a \`network\` or a floating IP.`);
        }
        const connection: SshConnection = { kind: 'ssh', host: address, port: ctx.settings.ssh.port, username };
        if (privateKeyPath) connection.privateKeyPath = privateKeyPath;
        const data: Record<string, unknown> = {
          serverId: id,
          image: { id: image.id, name: image.name ?? undefined },
          flavor: { id: flavor.id, name: flavor.name },
          networks: networks.map((n) => n.name || n.id),
          addresses: Object.fromEntries(Object.entries(server.addresses).map(([net, list]) => [net, list.map((a) => a.addr)])),
          attempts: attempt + 1,
        };
        if (fip) Object.assign(data, { floatingIpId: fip.id, floatingIp: fip.floating_ip_address });
        const host: ProvisionedHost = { hostname: address, name: record.name, providerId: id, connection, data };
        return host;
      }
      throw new ProviderError(
        PROVIDER,
        `server ${record.name} went to ERROR ${faults.length} time(s) (each was deleted; maxRetry is ${maxRetry}); Nova said: ${faults.at(-1)}. Check the image, flavor and network, or ask the cloud admins; raise \`maxRetry\` if the cause is passing.`,
        { status: 'ERROR' },
      );
    },

    async release(record, ctx) {
      const c = clients(ctx);
      const ids = await serversOfRecord(c, record);
      const floating = typeof record.data.floatingIpId === 'string' ? [record.data.floatingIpId] : [];
      const wanted = record.recipe.args.floatingIp ?? c.settings.floatingIp;
      // A record not (yet) ready may have a floating IP it never noted: look for it by description.
      await removeServer(c, ids, record.id, floating, floating.length > 0 || wanted === true || record.state !== 'ready');
    },

    async extend(record, leaseExpires, ctx) {
      const c = clients(ctx);
      const [id] = await serversOfRecord(c, record, ctx.signal);
      if (!id || !(await c.compute.getServer(id, ctx.signal))) {
        throw new ProviderError(PROVIDER, `server of ${record.name} is gone, so its lease cannot be extended; check it in to forget it.`, { status: 404 });
      }
      await c.compute.setMetadata(id, { [TAGS.lease]: leaseExpires }, ctx.signal);
    },

    async discover(ctx) {
      const c = clients(ctx);
      const servers = await c.compute.listServers(ctx.signal);
      return servers.filter((s) => s.metadata[TAGS.broker] === ctx.brokerId && s.status !== 'DELETED').map((s) => discovered(s, ctx, c.settings));
    },

    async describe(ctx, topic) {
      const c = clients(ctx);
      const out: Record<string, unknown> = {};
      if (!topic || topic === 'images') out.images = (await c.images.list(ctx.signal)).map((i) => i.name ?? i.id);
      if (!topic || topic === 'flavors') out.flavors = (await c.compute.listFlavors(ctx.signal)).map((f) => ({ name: f.name, vcpus: f.vcpus, ram: f.ram }));
      if (!topic || topic === 'networks') out.networks = (await c.networks.all(ctx.signal)).map((n) => n.name || n.id);
      return out;
    },

    async close() {
      sessions.clear();
      lookups.clear();
      quotaChecks.clear();
    },
  });
}

async function checkQuota(compute: Compute, flavor: Flavor, count: number): Promise<void> {
  const l = await compute.limits();
  const problems: string[] = [];
  const check = (what: string, need: number, max: number, used: number) => {
    // -1 means unlimited.
    if (max >= 0 && used + need > max) problems.push(`${what}: needs ${need}, ${Math.max(0, max - used)} free (limit ${max}, used ${used})`);
  };
  check('instances', count, l.maxTotalInstances, l.totalInstancesUsed);
  check('cores', count * flavor.vcpus, l.maxTotalCores, l.totalCoresUsed);
  check('RAM MiB', count * flavor.ram, l.maxTotalRAMSize, l.totalRAMUsed);
  if (problems.length) {
    throw new ProviderError(
      PROVIDER,
      `the project's quota cannot hold ${count} more servers of flavor ${flavor.name}: ${problems.join('; ')}. Nothing was created. Check in hosts you no longer need, ask for fewer, or ask the cloud admins for more quota.`,
      { status: 'QuotaExceeded' },
    );
  }
}

/** The address to reach a server at: the first IPv4 on the named networks, else any IPv4, else anything. */
export function addressOf(server: Server, networkNames: string[]): string | undefined {
  const order = [...networkNames.filter((n) => server.addresses[n]), ...Object.keys(server.addresses).filter((n) => !networkNames.includes(n))];
  const all = order.flatMap((n) => server.addresses[n] ?? []);
  const floating = all.find((a) => a['OS-EXT-IPS:type'] === 'floating');
  return floating?.addr ?? all.find((a) => a.version === 4 || (!a.version && a.addr.includes('.')))?.addr ?? all[0]?.addr ?? (server.accessIPv4 || undefined);
}

function toList(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

function floatingDescription(recordId: string): string {
  return `${TAGS.id}=${recordId}`;
}

/** Arguments worth keeping in metadata for `sync` elsewhere (no user data, no secrets). */
function recipeArgs(args: OpenStackArgs): Record<string, unknown> {
  const { userData: _u, metadata: _m, ...rest } = args;
  return redact(rest, 'drop');
}

function recipeFrom(m: Record<string, string>): Recipe {
  const fallback: Recipe = { provider: PROVIDER, instance: m[META.instance], args: {} };
  const text = m[META.recipe];
  if (!text) return fallback;
  try {
    const parsed = JSON.parse(text) as { instance?: string; args?: Record<string, unknown> };
    return { provider: PROVIDER, instance: parsed.instance ?? m[META.instance], args: parsed.args ?? {} };
  } catch {
    return fallback;
  }
}

export default createOpenStackProvider();
