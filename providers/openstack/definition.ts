/**
 * The `openstack` provider: Nova servers made through the OpenStack REST APIs (Keystone v3, Nova,
 * Glance, Neutron) with Node's own `fetch`, tagged with the inventory record in the server
 * metadata, reached over SSH. See `docs/providers/openstack.md`.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { httpTlsFields } from '../../lib/http-settings.js';
import { Duration } from '../../lib/settings.js';
import { defineProvider, type ImplementationFor, pickFlavor, pickImage } from '../../lib/provider.js';

const NameOrId = lazySchema(() => z.string().min(1));

/** Checkout arguments of the `openstack` provider. */
export const OpenStackArgs = lazySchema(() =>
  z.strictObject({
    /** Server name; the record's name when omitted. */
    name: z.string().min(1).max(255).optional().describe('server name (the record name when omitted)'),
    image: NameOrId.optional().describe('Glance image, by name or id (the instance default when omitted)'),
    flavor: NameOrId.optional().describe('Nova flavor, by name or id (the instance default when omitted)'),
    /** One network or several (the first one is where the host is reached unless a floating IP is used). */
    network: z
      .union([NameOrId, z.array(NameOrId).min(1)])
      .optional()
      .describe('Neutron network(s), by name or id'),
    keyName: NameOrId.optional().describe('Nova key pair name'),
    /** A public key file to import as `keyName` when the project has no key pair of that name. */
    publicKeyPath: z.string().min(1).optional().describe('public key file imported as keyName when that key pair is missing'),
    userData: z.string().optional().describe('user data (cloud-init; plain text, base64-encoded for you)'),
    configDrive: z.boolean().optional().describe('attach a config drive'),
    securityGroups: z.array(z.string().min(1)).optional().describe('security group names'),
    availabilityZone: z.string().min(1).optional().describe('availability zone'),
    /** `true`: allocate a floating IP on `floatingNetwork` and reach the host there. */
    floatingIp: z.boolean().optional().describe('allocate and associate a floating IP (released with the server)'),
    floatingNetwork: NameOrId.optional().describe('external network for the floating IP (the first external network when omitted)'),
    /** SSH user on the image (e.g. `fedora`, `cloud-user`, `debian`). */
    username: z.string().min(1).optional().describe('SSH user on the image'),
    /** Path of the private key on this machine (a reference; never read into the inventory). */
    privateKeyPath: z.string().min(1).optional().describe('path of the private key file for SSH'),
    /** Extra server metadata (the hostbroker.* keys are always added and win). */
    metadata: z.record(z.string().max(255), z.string().max(255)).optional().describe('extra server metadata'),
    /** Servers that go to ERROR are deleted and made again up to this many times. */
    maxRetry: z.number().int().min(0).max(10).optional().describe('times a server that goes to ERROR is deleted and made again'),
  }),
);
export type OpenStackArgs = z.output<typeof OpenStackArgs>;

/** The `auth` block, with the same keys as in `clouds.yaml`. */
export const OpenStackAuth = lazySchema(() =>
  z.strictObject({
    auth_url: z.string().url().optional(),
    username: z.string().min(1).optional(),
    user_id: z.string().min(1).optional(),
    password: z.string().optional(),
    project_name: z.string().min(1).optional(),
    project_id: z.string().min(1).optional(),
    user_domain_name: z.string().min(1).optional(),
    user_domain_id: z.string().min(1).optional(),
    project_domain_name: z.string().min(1).optional(),
    project_domain_id: z.string().min(1).optional(),
    application_credential_id: z.string().min(1).optional(),
    application_credential_name: z.string().min(1).optional(),
    application_credential_secret: z.string().optional(),
  }),
);
export type OpenStackAuth = z.output<typeof OpenStackAuth>;

/** Settings of one `openstack` instance (`openstack.instances.<name>` in broker_settings.yaml). */
export const OpenStackInstance = lazySchema(() =>
  z.strictObject({
    /** Cloud in `clouds.yaml` (else `$OS_CLOUD`, else the `OS_*` variables). */
    cloud: z.string().min(1).optional(),
    /** A `clouds.yaml` to read instead of the usual places. */
    cloudsFile: z.string().min(1).optional(),
    /** Credentials in clouds.yaml form; they override what `cloud` or `OS_*` give. */
    auth: OpenStackAuth.optional(),
    auth_type: z.enum(['password', 'v3password', 'v3applicationcredential']).optional(),
    region_name: z.string().min(1).optional(),
    interface: z.enum(['public', 'internal', 'admin']).optional(),
    /** Environment variable holding the password (keeps it out of the settings file). */
    passwordEnv: z.string().min(1).optional(),
    /** Environment variable holding the application credential secret. */
    applicationCredentialSecretEnv: z.string().min(1).optional(),
    /** Defaults for checkout arguments. */
    image: NameOrId.optional(),
    flavor: NameOrId.optional(),
    network: z.union([NameOrId, z.array(NameOrId).min(1)]).optional(),
    keyName: NameOrId.optional(),
    publicKeyPath: z.string().min(1).optional(),
    securityGroups: z.array(z.string().min(1)).optional(),
    availabilityZone: z.string().min(1).optional(),
    configDrive: z.boolean().optional(),
    floatingIp: z.boolean().optional(),
    floatingNetwork: NameOrId.optional(),
    username: z.string().min(1).optional(),
    privateKeyPath: z.string().min(1).optional(),
    /** Times a server that goes to ERROR is deleted and made again. */
    maxRetry: z.number().int().min(0).max(10).default(2),
    /** How long a server may take to become ACTIVE. */
    activeTimeout: Duration.default('15m'),
    /** How long to wait for a deleted server to be gone (before a retry, so quota is free). */
    deleteTimeout: Duration.default('5m'),
    /** Time between status polls. */
    pollInterval: Duration.default('5s'),
    /** Limit for one HTTP request. */
    requestTimeout: Duration.default('60s'),
    /** Extra attempts after a 5xx, 429 or connection error. */
    httpRetries: z.number().int().min(0).max(10).default(3),
    /** First delay between attempts (doubled each time). */
    retryDelay: Duration.default('1s'),
    /** Check Nova's limits before creating several servers at once. */
    quotaCheck: z.boolean().default(true),
    /** CA file and `insecure`; when unset, clouds.yaml's `cacert` and `verify` (or `OS_CACERT`) apply. */
    ca_file: httpTlsFields.ca_file,
    insecure: z.boolean().optional(),
  }),
);
export type OpenStackInstance = z.output<typeof OpenStackInstance>;

/** The `openstack` provider definition. */
export const openstack = defineProvider({
  name: 'openstack',
  description: 'OpenStack servers (Keystone v3, Nova, Glance, Neutron), tagged in server metadata, reached over SSH.',
  args: OpenStackArgs,
  instance: OpenStackInstance,
  fromTopology(host, provisioning) {
    const args: Record<string, unknown> = { name: host.name };
    const image = pickImage(host, provisioning);
    const flavor = pickFlavor(host, provisioning);
    const network = host.network ? (provisioning.networks?.[host.network] ?? host.network) : provisioning.networks?.default;
    if (image) args.image = image;
    if (flavor) args.flavor = flavor;
    if (network) args.network = network;
    if (provisioning.keypair) args.keyName = provisioning.keypair;
    if (typeof provisioning.max_retry === 'number') args.maxRetry = provisioning.max_retry;
    return { ...args, ...host.args };
  },
  load: async (): Promise<ImplementationFor<typeof OpenStackArgs, typeof OpenStackInstance>> => (await import('./provider.js')).default,
});
