/**
 * The `ec2` provider: Amazon EC2 instances made with RunInstances, tagged with the inventory
 * record, reached over SSH. See `docs/providers/ec2.md`.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { Duration } from '../../lib/settings.js';
import { defineProvider, type ImplementationFor, pickFlavor, pickImage } from '../../lib/provider.js';

const ImageRef = lazySchema(() =>
  z
    .string()
    .min(1)
    .describe(
      'AMI id (`ami-…`), `ssm:<parameter>` (e.g. `ssm:/aws/service/debian/release/12/latest/amd64`), or an image name (wildcards allowed; the newest match wins)',
    ),
);

/** Checkout arguments of the `ec2` provider. */
export const Ec2Args = lazySchema(() =>
  z.strictObject({
    /** Name tag of the instance; the record's name when omitted. */
    name: z.string().min(1).max(255).optional().describe('Name tag (the record name when omitted)'),
    image: ImageRef,
    instanceType: z.string().min(1).default('t3.micro').describe('instance type, e.g. t3.micro'),
    /** A subnet id, or a list: host number i of a checkout goes to subnet i mod n. */
    subnet: z
      .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
      .optional()
      .describe('subnet id, or a list of subnet ids to spread the hosts over'),
    securityGroups: z.array(z.string().min(1)).optional().describe('security group ids'),
    keyName: z.string().min(1).optional().describe('EC2 key pair name'),
    userData: z.string().optional().describe('user data (plain text; it is base64-encoded for you)'),
    /** Ask for a one-time spot instance; `true` or a maximum hourly price. */
    spot: z
      .union([z.boolean(), z.strictObject({ maxPrice: z.string().regex(/^\d+(\.\d+)?$/) })])
      .optional()
      .describe('one-time spot instance (true, or { maxPrice })'),
    region: z.string().min(1).optional().describe('region (the instance settings or the SDK default chain when omitted)'),
    /** SSH user name on the image (e.g. `admin` for Debian, `ec2-user` for Amazon Linux). */
    username: z.string().min(1).optional().describe('SSH user on the image (e.g. admin, ec2-user)'),
    /** Path of the private key on this machine matching `keyName` (a reference; never read into the inventory). */
    privateKeyPath: z.string().min(1).optional().describe('path of the private key file for SSH'),
    /** Which address the host is reached at. */
    address: z.enum(['public', 'private']).optional().describe('reach the host at its public (default) or private IP'),
    /** Extra tags (the hostbroker.* tags are always added). */
    tags: z.record(z.string(), z.string()).optional().describe('extra tags'),
  }),
);
export type Ec2Args = z.output<typeof Ec2Args>;

/** Settings of one `ec2` instance (`ec2.instances.<name>` in broker_settings.yaml). */
export const Ec2Instance = lazySchema(() =>
  z.strictObject({
    /** Region; the SDK default chain (AWS_REGION, profile) when omitted. */
    region: z.string().min(1).optional(),
    /** Shared-config profile to take credentials and region from. */
    profile: z.string().min(1).optional(),
    /** Explicit credentials. Prefer the SDK default chain; these are never recorded or logged. */
    accessKeyId: z.string().min(1).optional(),
    secretAccessKey: z.string().min(1).optional(),
    sessionToken: z.string().min(1).optional(),
    /** Custom endpoint (e.g. a local EC2-compatible service). */
    endpoint: z.string().url().optional(),
    /** Defaults for checkout arguments. */
    subnet: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    securityGroups: z.array(z.string().min(1)).optional(),
    keyName: z.string().min(1).optional(),
    username: z.string().min(1).optional(),
    privateKeyPath: z.string().min(1).optional(),
    address: z.enum(['public', 'private']).default('public'),
    /** Owners searched when an image is given by name. */
    imageOwners: z.array(z.string().min(1)).default(['self', 'amazon']),
    /** How long to wait for an instance to reach `running` with an address. */
    runningTimeout: Duration.default('10m'),
    /** Time between DescribeInstances polls while waiting. */
    pollInterval: Duration.default('5s'),
    /** Attempts for throttled or capacity-limited calls (1 = no retry). */
    attempts: z.number().int().min(1).max(20).default(6),
    /** First backoff delay; it doubles per attempt (with jitter), capped at `retryMaxDelay`. */
    retryDelay: Duration.default('1s'),
    retryMaxDelay: Duration.default('30s'),
    default: z.boolean().optional(),
  }),
);
export type Ec2Instance = z.output<typeof Ec2Instance>;

/** The `ec2` provider definition. */
export const ec2 = defineProvider({
  name: 'ec2',
  description: 'Amazon EC2 instances (RunInstances), tagged with the record id, owner and lease; reached over SSH.',
  args: Ec2Args,
  instance: Ec2Instance,
  packages: ['@aws-sdk/client-ec2'],
  fromTopology(host, provisioning) {
    const out: Record<string, unknown> = { name: host.name };
    const image = pickImage(host, provisioning);
    if (image) out.image = image;
    const flavor = pickFlavor(host, provisioning);
    if (flavor) out.instanceType = flavor;
    if (host.network) out.subnet = provisioning.networks?.[host.network] ?? host.network;
    if (provisioning.keypair) out.keyName = provisioning.keypair;
    return { ...out, ...host.args };
  },
  load: async (): Promise<ImplementationFor<typeof Ec2Args, typeof Ec2Instance>> => (await import('./provider.js')).default,
});
