/**
 * The `mrprovisioner` provider: bare-metal machines reserved from an mr-provisioner server through
 * its Bearer-token REST API v1, netbooted with a kernel, initrd and preseed of your choice.
 * See docs/providers/mrprovisioner.md.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { httpTlsFields } from '../../lib/http-settings.js';
import { sshLoginFields } from '../../lib/ssh-login.js';
import { defineProvider, type ImplementationFor } from '../../lib/provider.js';
import { Duration } from '../../lib/settings.js';

/** An image or preseed, by id or by name (the newest of that name wins). */
const ImageRef = lazySchema(() => z.union([z.number().int().positive(), z.string().min(1)]));

/** Power states mr-provisioner accepts. */
export const PowerState = lazySchema(() => z.enum(['on', 'off', 'reboot', 'pxe_reboot', 'bios_reboot', 'disk_reboot']));
export type PowerState = z.infer<typeof PowerState>;

export const MrProvisionerArgs = lazySchema(() =>
  z.strictObject({
    /** Machine query, in mr-provisioner's query syntax; any free machine when omitted. */
    query: z.string().max(300).optional().describe('machine query (mr-provisioner syntax, e.g. "arch=aarch64"); any free machine when omitted'),
    /** Reason shown on the reservation, after the hostbroker tag. */
    reason: z.string().max(100).optional().describe('reason shown on the reservation'),
    kernel: ImageRef.optional().describe('kernel image id or name (newest of that name)'),
    initrd: ImageRef.optional().describe('initrd image id or name'),
    preseed: ImageRef.optional().describe('preseed id or name'),
    kernelOptions: z.string().max(1024).optional().describe('kernel command line options'),
    /** Netboot-install the machine (`POST /machine/{id}/state`); default: when a kernel is given. */
    provision: z.boolean().optional().describe('provision (netboot install) the machine; default: when a kernel is given'),
    /** Power action after configuration when not provisioning, e.g. `on` or `reboot`. */
    power: PowerState.optional().describe('power action when not provisioning (on, off, reboot, pxe_reboot, ...)'),
    /** Which address becomes the host's: the machine's hostname, or its interface's IPv4. */
    address: z.enum(['hostname', 'ipv4']).default('hostname').describe('address to use: hostname (default) or ipv4'),
    /** Display name. */
    name: z.string().optional().describe('display name of the host'),
  }),
);
export type MrProvisionerArgs = z.output<typeof MrProvisionerArgs>;

export const MrProvisionerInstance = lazySchema(() =>
  z.strictObject({
    /** API base URL, e.g. `http://mrp.example.com/api/v1`. */
    url: z.url(),
    /** API token; prefer `tokenEnv`. Never written to the inventory or logs. */
    token: z.string().min(1).optional(),
    /** Environment variable holding the API token. */
    tokenEnv: z.string().default('MRP_TOKEN'),
    /** Power the machine off before giving it back. */
    powerOffOnRelease: z.boolean().default(true),
    /** SSH login for provisioned machines (defaults to the `ssh` settings). */
    ...sshLoginFields,
    /** Limit for one API request. */
    requestTimeout: Duration.default('60s'),
    /** Extra attempts after connection errors and 5xx. */
    retries: z.number().int().min(0).max(10).default(3),
    ...httpTlsFields,
  }),
);
export type MrProvisionerInstance = z.output<typeof MrProvisionerInstance>;

export const UploadImageArgs = lazySchema(() =>
  z.strictObject({
    /** Local file to upload. */
    path: z.string().min(1),
    /** Image type as the server knows it, e.g. `Kernel` or `Initrd`. */
    type: z.string().min(1),
    description: z.string().max(256).optional(),
    public: z.boolean().optional(),
    knownGood: z.boolean().optional(),
    /** File name sent to the server; default: the file's base name. */
    filename: z.string().optional(),
  }),
);

export const PowerArgs = lazySchema(() =>
  z.strictObject({
    /** Machine id or name (one assigned to you). */
    machine: z.union([z.number().int().positive(), z.string().min(1)]),
    state: PowerState,
  }),
);

const mrprovisionerActions = {
  'upload-image': { description: 'Upload a kernel/initrd image (POST /image, multipart); returns the image record.', schema: UploadImageArgs },
  power: { description: 'Power control of a machine assigned to you (on, off, reboot, pxe_reboot, ...).', schema: PowerArgs },
};

export const mrprovisioner = defineProvider({
  name: 'mrprovisioner',
  description: 'Bare-metal machines reserved from mr-provisioner (REST API v1, Bearer token), netbooted with your kernel/initrd/preseed.',
  args: MrProvisionerArgs,
  instance: MrProvisionerInstance,
  actions: mrprovisionerActions,
  load: async (): Promise<ImplementationFor<typeof MrProvisionerArgs, typeof MrProvisionerInstance, typeof mrprovisionerActions>> =>
    (await import('./provider.js')).default,
});
