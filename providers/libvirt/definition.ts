/**
 * The `libvirt` provider: a domain per host on a copy-on-write overlay of a base image, given an
 * SSH key through a cloud-init seed, tagged in its `<metadata>`. See `docs/providers/libvirt.md`.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { defineProvider, type ImplementationFor, pickFlavor, pickImage } from '../../lib/provider.js';
import { HostName } from '../../lib/records.js';
import { Duration } from '../../lib/settings.js';

/**
 * QEMU's user-mode networking: no bridge, no libvirt network; SSH and `ports` are forwarded from
 * free ports on 127.0.0.1 of the hypervisor host (so use it where hostbroker runs on that host).
 */
export const UserNetwork = lazySchema(() =>
  z.strictObject({
    mode: z.literal('user'),
    /** Guest TCP ports to forward besides SSH (22). */
    ports: z.array(z.number().int().min(1).max(65535)).default([]).describe('guest TCP ports forwarded besides 22'),
    /** Cut the guest off from the outside (QEMU `restrict=on`); the forwards still work. */
    restrict: z.boolean().default(false).describe('no outbound traffic from the guest'),
  }),
);
export type UserNetwork = z.output<typeof UserNetwork>;
/** A libvirt network name, or `{ mode: 'user' }`. */
const Network = lazySchema(() => z.union([z.string().min(1), UserNetwork]));
const AbsolutePath = lazySchema(() => z.string().regex(/^\//, 'an absolute path on the hypervisor'));

/** Checkout arguments of the `libvirt` provider. */
export const LibvirtArgs = lazySchema(() =>
  z.strictObject({
    /** Host name; the domain is named `<name>-<6 hex of the record id>` so names never collide. */
    name: HostName.optional().describe('host name (random when omitted)'),
    /** Base image: a volume name in `pool`, or an absolute path of an image file on the hypervisor. */
    baseImage: z.string().min(1).describe('base image: volume name in the pool, or absolute path on the hypervisor'),
    baseFormat: z.enum(['qcow2', 'raw']).default('qcow2').describe('format of the base image'),
    /** Memory in MiB. */
    memory: z.number().int().min(64).default(1024).describe('memory in MiB'),
    vcpus: z.number().int().min(1).max(512).default(1).describe('virtual CPUs'),
    /** Size of the overlay disk in GiB (at least the base image's virtual size). */
    disk: z.number().int().min(1).default(10).describe('disk size in GiB'),
    network: Network.optional().describe("libvirt network (the instance setting, or `default`), or { mode: 'user', ports } for QEMU user-mode networking"),
    pool: z.string().min(1).optional().describe('storage pool for the overlay and seed (the instance setting, or `default`)'),
    username: z.string().min(1).optional().describe('user cloud-init creates with the key (the ssh settings user when omitted)'),
    /** Private key on this machine used for SSH (a reference; never read into the inventory). */
    privateKeyPath: z.string().min(1).optional().describe('private key file for SSH'),
    /** Public key put into the cloud-init seed; `<privateKeyPath>.pub` when omitted. */
    publicKeyPath: z.string().min(1).optional().describe('public key file for the seed (default: <privateKeyPath>.pub)'),
    /** Extra cloud-config merged into the seed's user-data (e.g. `packages`). */
    cloudConfig: z.record(z.string(), z.unknown()).optional().describe('extra cloud-config keys for user-data'),
    /** Direct kernel boot: kernel image on the hypervisor (then `initrd` and `cmdline` apply). */
    kernel: AbsolutePath.optional().describe('kernel image on the hypervisor (direct kernel boot)'),
    initrd: AbsolutePath.optional().describe('initrd on the hypervisor (with kernel)'),
    cmdline: z.string().optional().describe('kernel command line (with kernel)'),
    /** Bus of the seed CD-ROM (the instance setting when omitted). */
    seedBus: z.enum(['sata', 'scsi']).optional().describe('bus of the seed CD-ROM: sata, or scsi for kernels without AHCI'),
    /** Extra device XML appended to the domain's `<devices>` (checked before anything is made). */
    devices: z.string().min(1).optional().describe('extra device XML for <devices> (e.g. a second disk)'),
  }),
);
export type LibvirtArgs = z.output<typeof LibvirtArgs>;

/** Settings of one `libvirt` instance (`libvirt.instances.<name>` in broker_settings.yaml). */
export const LibvirtInstance = lazySchema(() =>
  z.strictObject({
    /** Connection URI, e.g. `qemu:///system`, `qemu+ssh://root@kvm1/system`, `test:///default`. */
    uri: z.string().min(1).default('qemu:///system'),
    /** Domain type; `test` for test: URIs, else `kvm`. */
    domainType: z.enum(['kvm', 'qemu', 'test']).optional(),
    pool: z.string().min(1).default('default'),
    network: Network.default('default'),
    /** Bus of the seed CD-ROM: `sata`, or `scsi` (virtio-scsi) for kernels without AHCI, such as Debian's cloud kernel. */
    seedBus: z.enum(['sata', 'scsi']).default('sata'),
    /**
     * How volumes are made: `virsh` runs `virsh vol-create`/`vol-upload`/`vol-delete` on the same
     * URI (the native binding has no storage API); `plan` only records the volumes the domain uses
     * (for the test driver, or pools you fill yourself). Default: `plan` for test: URIs, else `virsh`.
     */
    volumes: z.enum(['virsh', 'plan']).optional(),
    /** Wait for the guest's IP address (user mode: for its SSH banner). Off: the host is reached by its domain name (libvirt NSS). */
    waitForAddress: z.boolean().default(true),
    /** Where the address comes from: the network's DHCP leases, the guest agent, or the ARP table. */
    addressSource: z.enum(['lease', 'agent', 'arp']).default('lease'),
    addressTimeout: Duration.default('5m'),
    pollInterval: Duration.default('2s'),
    /** The virsh command (libvirt-clients). */
    virsh: z.string().min(1).default('virsh'),
    username: z.string().min(1).optional(),
    privateKeyPath: z.string().min(1).optional(),
    publicKeyPath: z.string().min(1).optional(),
    default: z.boolean().optional(),
  }),
);
export type LibvirtInstance = z.output<typeof LibvirtInstance>;

/** The `libvirt` provider definition. */
export const libvirt = defineProvider({
  name: 'libvirt',
  description: 'libvirt domains on a copy-on-write overlay of a base image, keyed with a cloud-init seed; reached over SSH.',
  args: LibvirtArgs,
  instance: LibvirtInstance,
  packages: ['@unraid/libvirt'],
  fromTopology(host, provisioning) {
    const out: Record<string, unknown> = { name: host.name };
    const image = pickImage(host, provisioning);
    if (image) out.baseImage = image;
    // A flavor is `<memory MiB>:<vcpus>[:<disk GiB>]`, e.g. `2048:2:20`.
    const flavor = pickFlavor(host, provisioning);
    const m = flavor ? /^(\d+):(\d+)(?::(\d+))?$/.exec(flavor) : null;
    if (m) {
      out.memory = Number(m[1]);
      out.vcpus = Number(m[2]);
      if (m[3]) out.disk = Number(m[3]);
    }
    if (host.network) out.network = provisioning.networks?.[host.network] ?? host.network;
    return { ...out, ...host.args };
  },
  load: async (): Promise<ImplementationFor<typeof LibvirtArgs, typeof LibvirtInstance>> => (await import('./provider.js')).default,
});
