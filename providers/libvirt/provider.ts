/**
 * The `libvirt` provider implementation (loaded lazily by the definition).
 * Domains are defined and started through the native binding `@unraid/libvirt`; volumes and guest
 * addresses, which the binding lacks, go through `virsh` on the same URI (see ./virsh.ts).
 * Every domain carries hostbroker `<metadata>` (record id, owner, broker, lease, its volumes), so
 * `release` and `sync` find it by the record id even when the process died mid-checkout.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { abortedBeforeStart } from '../../lib/concurrency.js';
import { MissingDependencyError, ProviderError, TimeoutError, UserInputError, importOptional, messageOf } from '../../lib/errors.js';
import { type DiscoveredHost, type ImplementationOf, type ProviderContext, implementProvider } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { toMs } from '../../lib/settings.js';
import { type LibvirtInstance, libvirt } from './definition.js';
import { buildSeedIso, cloudInitSeed, readPublicKey } from './seed.js';
import { Virsh } from './virsh.js';
import { freeForwards, portMapOf, waitForSshBanner } from './user-net.js';
import { type DomainMetadata, type Forward, type OwnedVolume, checkDevicesXml, domainXml, parseMetadata, withLease } from './xml.js';

/** The few members of `@unraid/libvirt` this provider uses (so it type-checks without the package). */
export interface LibvirtDomain {
  create(): Promise<void>;
  destroy(): Promise<void>;
  undefine(): Promise<void>;
  getXMLDesc(flags?: number): Promise<string>;
  getName(): Promise<string>;
  getUUIDString(): Promise<string>;
  getInfo(): Promise<{ state: number }>;
}
export interface LibvirtConnection {
  connectOpen(): Promise<void>;
  connectClose(): Promise<void>;
  connectListAllDomains(flags?: number): Promise<LibvirtDomain[]>;
  domainDefineXML(xml: string): Promise<LibvirtDomain>;
  domainLookupByName(name: string): Promise<LibvirtDomain>;
}
export interface LibvirtModule {
  Hypervisor: new (options: { uri: string }) => LibvirtConnection;
}

/** `virDomainGetXMLDesc` flag: the persistent (next boot) definition, where extend writes the lease. */
const XML_INACTIVE = 2;
const DOMAIN_RUNNING = 1;
const NOT_FOUND = /Domain not found|no domain with matching/i;
const NOT_RUNNING = /not running/i;
/** QEMU could not bind a forward's host port (taken since it was picked): pick others. */
const FORWARD_TAKEN = /host forwarding rule|hostfwd/i;
/** Where user-mode forwards listen: loopback of the hypervisor host. */
const FORWARD_HOST = '127.0.0.1';
const PACKAGE = '@unraid/libvirt';

/** Loads the native binding; a missing package or a binding that cannot load says what to install. */
export async function loadLibvirt(importer: (specifier: string) => Promise<unknown> = (s) => import(s)): Promise<LibvirtModule> {
  const neededFor = 'The libvirt provider (a native addon: install libvirt-dev and pkg-config first so it can build)';
  try {
    // A variable specifier keeps TypeScript and bundlers from requiring the optional package.
    return await importOptional(PACKAGE, neededFor, () => importer(PACKAGE) as Promise<LibvirtModule>);
  } catch (error) {
    if (error instanceof MissingDependencyError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_DLOPEN_FAILED' || /bindings|\.node\b|libvirt\.so/.test(messageOf(error)))
      throw new MissingDependencyError(PACKAGE, neededFor, { cause: error });
    throw error;
  }
}

/** What the provider keeps in `record.data` (no secrets). */
export type LibvirtRecordData = {
  uri: string;
  domain: string;
  uuid: string;
  pool: string;
  /** The libvirt network, or `user` for QEMU user-mode networking. */
  network: string;
  mac: string;
  volumes: OwnedVolume[];
  /** User-mode forwards (host port per guest port). */
  forwards?: Forward[];
  /** `plan`: the volumes were not made by hostbroker (test driver, or pools filled by hand). */
  volumeMode: 'virsh' | 'plan';
  memory: number;
  vcpus: number;
};

/** Domain name of a record: its name plus 6 hex of its id, so names never collide. */
export function domainNameOf(record: HostRecord): string {
  return `${record.name}-${record.id.replace(/^hb-/, '').slice(0, 6)}`;
}

/** Options for {@link createLibvirtProvider}. */
export interface LibvirtProviderOptions {
  /** Loads the binding (tests pass their own to check the missing-package error). */
  loadModule?: () => Promise<LibvirtModule>;
}

/** Creates a `libvirt` provider implementation (with its own connection cache). */
export function createLibvirtProvider(options: LibvirtProviderOptions = {}): ImplementationOf<typeof libvirt> {
  const load = options.loadModule ?? (() => loadLibvirt());
  const connections = new Map<string, Promise<LibvirtConnection>>();

  function connect(uri: string): Promise<LibvirtConnection> {
    let conn = connections.get(uri);
    if (!conn) {
      conn = (async () => {
        const { Hypervisor } = await load();
        const c = new Hypervisor({ uri });
        try {
          await c.connectOpen();
        } catch (error) {
          throw new ProviderError(
            'libvirt',
            `cannot connect to ${uri}: ${messageOf(error)}; check that libvirtd (or virtqemud) runs there and that you may use it (e.g. membership of the libvirt group).`,
            { cause: error },
          );
        }
        return c;
      })();
      connections.set(uri, conn);
      conn.catch(() => connections.delete(uri));
    }
    return conn;
  }

  const virshFor = (s: LibvirtInstance, uri: string) => new Virsh(uri, s.virsh);
  const volumeModeOf = (s: LibvirtInstance, uri: string) => s.volumes ?? (uri.startsWith('test:') ? 'plan' : 'virsh');

  async function lookup(conn: LibvirtConnection, name: string): Promise<LibvirtDomain | undefined> {
    try {
      return await conn.domainLookupByName(name);
    } catch (error) {
      if (NOT_FOUND.test(messageOf(error))) return undefined;
      throw libvirtError(error, `look up the domain ${name}`);
    }
  }

  /** Domains with hostbroker metadata, with that metadata (persistent definition). */
  async function tagged(conn: LibvirtConnection): Promise<Array<{ domain: LibvirtDomain; name: string; meta: DomainMetadata; xml: string }>> {
    const out: Array<{ domain: LibvirtDomain; name: string; meta: DomainMetadata; xml: string }> = [];
    for (const domain of await conn.connectListAllDomains().catch((e: unknown) => Promise.reject(libvirtError(e, 'list domains')))) {
      let xml: string;
      try {
        xml = await domain.getXMLDesc(XML_INACTIVE);
      } catch (error) {
        if (NOT_FOUND.test(messageOf(error))) continue; // removed while listing
        throw libvirtError(error, 'read a domain definition');
      }
      const meta = parseMetadata(xml);
      if (meta) out.push({ domain, name: await domain.getName(), meta, xml });
    }
    return out;
  }

  /** Destroys and undefines a domain (either may already be done) and deletes its volumes. */
  async function remove(domain: LibvirtDomain | undefined, volumes: OwnedVolume[], mode: 'virsh' | 'plan', virsh: Virsh): Promise<void> {
    if (domain) {
      await domain.destroy().catch((error: unknown) => {
        if (!NOT_RUNNING.test(messageOf(error)) && !NOT_FOUND.test(messageOf(error))) throw libvirtError(error, 'stop the domain');
      });
      await domain.undefine().catch((error: unknown) => {
        if (!NOT_FOUND.test(messageOf(error))) throw libvirtError(error, 'undefine the domain');
      });
    }
    if (mode === 'virsh') for (const v of volumes) await virsh.deleteVolume(v.pool, v.name);
  }

  async function waitForAddress(virsh: Virsh, domain: string, s: LibvirtInstance, ctx: ProviderContext<LibvirtInstance>): Promise<string> {
    const limit = toMs(s.addressTimeout);
    const interval = toMs(s.pollInterval);
    const deadline = Date.now() + limit;
    let lastError = '';
    for (;;) {
      try {
        const found = await virsh.addresses(domain, s.addressSource, ctx.signal);
        if (found[0]) return found[0];
      } catch (error) {
        if (ctx.signal.aborted) throw error;
        lastError = messageOf(error); // e.g. the guest agent is not up yet
      }
      if (Date.now() + interval > deadline) {
        throw new TimeoutError(
          `[libvirt] domain ${domain} got no IPv4 address from its ${s.addressSource === 'lease' ? "network's DHCP leases" : s.addressSource === 'agent' ? 'guest agent' : 'ARP table'} within ${Math.round(limit / 1000)} s${lastError ? ` (last error: ${lastError})` : ''}; check that the network has DHCP (virsh net-dumpxml), use addressSource: agent with qemu-guest-agent in the image, or set waitForAddress: false to reach it by name through libvirt NSS.`,
          limit,
        );
      }
      await new Promise((r) => setTimeout(r, interval));
    }
  }

  /** User mode: waits for the guest's SSH banner through its forward. */
  async function waitForSsh(domain: LibvirtDomain, name: string, ssh: Forward, s: LibvirtInstance, ctx: ProviderContext<LibvirtInstance>): Promise<void> {
    const limit = toMs(s.addressTimeout);
    const outcome = await waitForSshBanner({
      host: ssh.host,
      port: ssh.port,
      timeoutMs: limit,
      intervalMs: Math.min(toMs(s.pollInterval), 1000),
      signal: ctx.signal,
      running: async () => (await domain.getInfo().catch(() => ({ state: 0 }))).state === DOMAIN_RUNNING,
    });
    if (outcome === 'stopped')
      throw new ProviderError(
        'libvirt',
        `domain ${name} stopped before its SSH answered on ${ssh.host}:${ssh.port}; see QEMU's log (/var/log/libvirt/qemu/${name}.log on the hypervisor) and check that the image boots with this kernel and disk.`,
      );
    if (outcome === 'timeout')
      throw new TimeoutError(
        `[libvirt] domain ${name} sent no SSH banner on ${ssh.host}:${ssh.port} (forwarded to its port 22) within ${Math.round(limit / 1000)} s; watch its boot with \`virsh console ${name}\`: the image must take its address by DHCP and start sshd. Raise addressTimeout for slow (software-emulated) hypervisors.`,
        limit,
      );
  }

  return implementProvider(libvirt, {
    async checkout(args, target, ctx) {
      const s = ctx.instanceSettings;
      const { record } = target;
      if (ctx.signal.aborted) throw abortedBeforeStart(`checkout of ${record.name}`, ctx.signal);
      const uri = s.uri;
      const mode = volumeModeOf(s, uri);
      const virsh = virshFor(s, uri);
      const name = domainNameOf(record);
      const pool = args.pool ?? s.pool;
      const network = args.network ?? s.network;
      const user = typeof network === 'string' ? undefined : network;
      if (user && uri.startsWith('test:'))
        throw new UserInputError(
          "[libvirt] network mode 'user' is QEMU's user-mode networking; the test driver has none: use a qemu:// URI or a libvirt network.",
        );
      if ((args.initrd || args.cmdline) && !args.kernel)
        throw new UserInputError('[libvirt] initrd and cmdline are for direct kernel boot: give kernel (a path on the hypervisor) too, or leave them out.');
      if (args.devices) checkDevicesXml(args.devices);
      const username = args.username ?? s.username ?? ctx.settings.ssh.username;
      const privateKeyPath = args.privateKeyPath ?? s.privateKeyPath ?? ctx.settings.ssh.privateKeyPath;
      const publicKeyPath = args.publicKeyPath ?? s.publicKeyPath ?? (privateKeyPath ? `${privateKeyPath}.pub` : undefined);
      if (!publicKeyPath)
        throw new UserInputError(
          '[libvirt] no SSH key to put in the cloud-init seed: give publicKeyPath or privateKeyPath (argument, libvirt settings, or ssh.privateKeyPath).',
        );
      const seed = cloudInitSeed({
        instanceId: record.id,
        hostname: name,
        username,
        publicKey: await readPublicKey(publicKeyPath),
        ...(args.cloudConfig ? { extra: args.cloudConfig } : {}),
        guestAgent: s.addressSource === 'agent',
      });
      const disk: OwnedVolume = { pool, name: `${name}.qcow2`, role: 'disk' };
      const seedVolume: OwnedVolume = { pool, name: `${name}-seed.iso`, role: 'seed' };
      const volumes = [disk, seedVolume];
      const mac = `52:54:00:${[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
      const meta: DomainMetadata = { id: record.id, owner: record.owner, broker: record.brokerId, name: record.name, created: record.createdAt, volumes };
      if (record.leaseExpires) meta.lease = record.leaseExpires;
      const xmlWith = (forwards: Forward[]) =>
        domainXml({
          type: s.domainType ?? (uri.startsWith('test:') ? 'test' : 'kvm'),
          name,
          memoryMiB: args.memory,
          vcpus: args.vcpus,
          nic: typeof network === 'string' ? { mode: 'network', network } : { mode: 'user', forwards, restrict: network.restrict },
          mac,
          disk,
          diskFormat: 'qcow2',
          seed: seedVolume,
          seedBus: args.seedBus ?? s.seedBus,
          ...(args.kernel
            ? { boot: { kernel: args.kernel, ...(args.initrd ? { initrd: args.initrd } : {}), ...(args.cmdline ? { cmdline: args.cmdline } : {}) } }
            : {}),
          ...(args.devices ? { devices: args.devices } : {}),
          metadata: forwards.length ? { ...meta, forwards } : meta,
        });
      const conn = await connect(uri);
      let domain: LibvirtDomain | undefined;
      try {
        if (mode === 'virsh') {
          await virsh.createOverlay(pool, disk.name, args.disk * 2 ** 30, args.baseImage, args.baseFormat);
          const iso = await buildSeedIso(seed);
          try {
            await virsh.uploadVolume(pool, seedVolume.name, iso.path);
          } finally {
            await iso.cleanup();
          }
        } else {
          ctx.logger.debug(
            `libvirt: volumes: plan — expecting ${pool}/${disk.name} (overlay of ${args.baseImage}) and ${pool}/${seedVolume.name} to be provided`,
            { uri },
          );
        }
        let forwards: Forward[] = [];
        let defined: LibvirtDomain;
        for (let attempt = 1; ; attempt++) {
          if (user) forwards = await freeForwards(FORWARD_HOST, user.ports);
          defined = await conn.domainDefineXML(xmlWith(forwards)).catch((e: unknown) => Promise.reject(libvirtError(e, `define the domain ${name}`)));
          domain = defined;
          const started = await defined.create().then(
            () => undefined,
            (e: unknown) => e,
          );
          if (started === undefined) break;
          if (!(user && attempt < 3 && FORWARD_TAKEN.test(messageOf(started)))) throw libvirtError(started, `start the domain ${name}`);
          // Another process took a picked port in between: redefine with new ones.
          await defined.undefine().catch(() => undefined);
          domain = undefined;
        }
        let hostname: string;
        let port = 22;
        if (user) {
          const ssh = forwards[0]!;
          if (s.waitForAddress) await waitForSsh(defined, name, ssh, s, ctx);
          hostname = ssh.host;
          port = ssh.port;
        } else {
          hostname = s.waitForAddress ? await waitForAddress(virsh, name, s, ctx) : name;
        }
        const data: LibvirtRecordData = {
          uri,
          domain: name,
          uuid: await defined.getUUIDString(),
          pool,
          network: typeof network === 'string' ? network : 'user',
          mac,
          volumes,
          ...(forwards.length ? { forwards } : {}),
          volumeMode: mode,
          memory: args.memory,
          vcpus: args.vcpus,
        };
        return {
          hostname,
          providerId: data.uuid,
          connection: { kind: 'ssh', host: hostname, port, username, ...(privateKeyPath ? { privateKeyPath } : {}) },
          ...(forwards.length ? { ports: portMapOf(forwards) } : {}),
          data,
        };
      } catch (error) {
        await remove(domain ?? (await lookup(conn, name).catch(() => undefined)), volumes, mode, virsh).catch((e: unknown) =>
          ctx.logger.warn(`libvirt: could not clean up ${name} after a failed checkout; checkin or sync will find it by its metadata`, { error: messageOf(e) }),
        );
        throw error;
      }
    },

    async release(record, ctx) {
      const s = ctx.instanceSettings;
      const data = record.data as Partial<LibvirtRecordData>;
      const uri = data.uri ?? s.uri;
      const conn = await connect(uri);
      const name = data.domain ?? domainNameOf(record);
      let domain = await lookup(conn, name);
      let meta = domain ? parseMetadata(await domain.getXMLDesc(XML_INACTIVE).catch(() => '')) : undefined;
      if (domain && meta?.id !== record.id) {
        // A domain of that name that is not ours is never touched; look for ours by metadata.
        domain = undefined;
        meta = undefined;
      }
      if (!domain) {
        const found = (await tagged(conn)).find((d) => d.meta.id === record.id);
        domain = found?.domain;
        meta = found?.meta;
      }
      const volumes = meta?.volumes ??
        data.volumes ?? [
          { pool: s.pool, name: `${name}.qcow2`, role: 'disk' as const },
          { pool: s.pool, name: `${name}-seed.iso`, role: 'seed' as const },
        ];
      await remove(domain, volumes, data.volumeMode ?? volumeModeOf(s, uri), virshFor(s, uri));
    },

    async extend(record, leaseExpires, ctx) {
      const s = ctx.instanceSettings;
      const data = record.data as Partial<LibvirtRecordData>;
      const conn = await connect(data.uri ?? s.uri);
      const found = (await tagged(conn)).find((d) => d.meta.id === record.id);
      if (!found)
        throw new ProviderError(
          'libvirt',
          `no domain of ${record.name} (${record.id}) exists any more on ${data.uri ?? s.uri}; check it in to remove the record.`,
        );
      // Redefining with the same name and uuid updates the persistent definition in place.
      await conn
        .domainDefineXML(withLease(found.xml, leaseExpires))
        .catch((e: unknown) => Promise.reject(libvirtError(e, `update the lease of ${found.name}`)));
    },

    async discover(ctx) {
      const s = ctx.instanceSettings;
      const conn = await connect(s.uri);
      const virsh = virshFor(s, s.uri);
      const out: DiscoveredHost[] = [];
      for (const d of await tagged(conn)) {
        if (d.meta.broker !== ctx.brokerId) continue;
        const running = (await d.domain.getInfo().catch(() => ({ state: 0 }))).state === DOMAIN_RUNNING;
        const keyPath = s.privateKeyPath ?? ctx.settings.ssh.privateKeyPath;
        // User mode: the SSH forward in the metadata is the address.
        const ssh = d.meta.forwards?.find((f) => f.guest === 22);
        let hostname = ssh?.host ?? d.name;
        if (!ssh && running && s.waitForAddress) hostname = (await virsh.addresses(d.name, s.addressSource).catch(() => []))[0] ?? d.name;
        const host: DiscoveredHost = {
          id: d.meta.id,
          owner: d.meta.owner,
          brokerId: d.meta.broker,
          name: d.meta.name || d.name,
          hostname,
          providerId: await d.domain.getUUIDString(),
          connection: {
            kind: 'ssh',
            host: hostname,
            port: ssh?.port ?? 22,
            username: s.username ?? ctx.settings.ssh.username,
            ...(keyPath ? { privateKeyPath: keyPath } : {}),
          },
          data: {
            uri: s.uri,
            domain: d.name,
            volumes: d.meta.volumes,
            volumeMode: volumeModeOf(s, s.uri),
            running,
            ...(d.meta.forwards ? { network: 'user', forwards: d.meta.forwards } : {}),
          },
          recipe: { provider: 'libvirt', instance: ctx.instance, args: {} },
        };
        if (d.meta.forwards) host.ports = portMapOf(d.meta.forwards);
        if (d.meta.lease) host.leaseExpires = d.meta.lease;
        if (d.meta.created) host.createdAt = d.meta.created;
        out.push(host);
      }
      return out;
    },

    async close() {
      const all = [...connections.values()];
      connections.clear();
      for (const c of await Promise.allSettled(all)) if (c.status === 'fulfilled') await c.value.connectClose().catch(() => undefined);
    },
  });
}

function libvirtError(error: unknown, what: string): ProviderError {
  if (error instanceof ProviderError) return error;
  return new ProviderError('libvirt', `could not ${what}: ${messageOf(error)}`, { cause: error });
}

/** The provider the registry loads. */
export default createLibvirtProvider();
