/**
 * The `static` provider: machines that already exist (lab boxes, long-lived VMs), listed in
 * settings. A checkout reserves a free one that matches the request, under the inventory lock,
 * so two processes never get the same machine; checkin gives it back.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { JumpHost } from '../../lib/records.js';
import { defineProvider, pickFlavor, type ImplementationFor, type ProvisioningConfig, type TopologyHost } from '../../lib/provider.js';

/** One existing machine (`static.hosts[]` in broker_settings.yaml). */
export const StaticMachine = lazySchema(() =>
  z.strictObject({
    /** Name used to ask for this machine and shown in the inventory. */
    name: z.string().min(1),
    /** Address SSH connects to. */
    hostname: z.string().min(1),
    /** SSH port (default 22, or the OpenSSH config's Port with `sshConfig`). */
    port: z.number().int().min(1).max(65535).optional(),
    username: z.string().min(1).optional(),
    /** Private key file for SSH (a path, never the key). */
    privateKeyPath: z.string().min(1).optional(),
    /** Environment variable holding the SSH password. */
    passwordEnv: z.string().min(1).optional(),
    /** Log in with the ssh-agent at `$SSH_AUTH_SOCK`. */
    agent: z.boolean().optional(),
    /** Forward the ssh-agent to the machine. */
    forwardAgent: z.boolean().optional(),
    /** Environment variable holding the passphrase of an encrypted `privateKeyPath`. */
    passphraseEnv: z.string().min(1).optional(),
    /** Jump hosts to reach the machine through, first to last (OpenSSH `ProxyJump`). */
    jump: z.array(JumpHost).optional(),
    /**
     * Read the OpenSSH config (`true`: `~/.ssh/config`, or this path) for `hostname` as an alias:
     * HostName, Port, User, IdentityFile and ProxyJump fill what is not set here. Default: settings `ssh.sshConfig`.
     */
    sshConfig: z.union([z.boolean(), z.string().min(1)]).optional(),
    /** Groups a request can ask for (`group: db`). */
    groups: z.array(z.string().min(1)).default([]),
    /** Labels a request can match (`labels: { arch: arm64 }`). */
    labels: z.record(z.string(), z.string()).default({}),
  }),
);
export type StaticMachine = z.output<typeof StaticMachine>;

/** Settings of one `static` instance. */
export const StaticInstance = lazySchema(() =>
  z.strictObject({
    hosts: z.array(StaticMachine).default([]),
  }),
);
export type StaticInstance = z.output<typeof StaticInstance>;

/** What to ask for: a machine by name, or any free one in a group and/or with labels. */
export const StaticArgs = lazySchema(() =>
  z.strictObject({
    name: z.string().min(1).optional().describe('the machine with this name'),
    group: z.string().min(1).optional().describe('any free machine in this group'),
    labels: z.record(z.string(), z.string()).optional().describe('any free machine with all these labels, e.g. {"arch":"arm64"}'),
  }),
);
export type StaticArgs = z.output<typeof StaticArgs>;

const staticActions = lazySchema(() => ({
  machines: {
    description: 'list the machines of the instance and who holds each (group narrows the list)',
    schema: z.strictObject({ group: z.string().min(1).optional().describe('only machines in this group') }),
  },
}));

export const staticProvider = defineProvider({
  name: 'static',
  description: 'Existing machines listed in settings; checkout reserves a free one (by name, group or labels), checkin frees it.',
  args: StaticArgs,
  instance: StaticInstance,
  actions: staticActions,
  // A topology host picks a machine by its `args`, else by the group its flavor names (pools of machines).
  fromTopology(host: TopologyHost, provisioning: ProvisioningConfig): Record<string, unknown> {
    if (host.args.name !== undefined || host.args.group !== undefined || host.args.labels !== undefined) return {};
    const group = pickFlavor(host, provisioning);
    return group ? { group } : {};
  },
  load: async (): Promise<ImplementationFor<typeof StaticArgs, typeof StaticInstance, typeof staticActions>> => (await import('./provider.js')).default,
});
