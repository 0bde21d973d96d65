/**
 * The `beaker` provider: a system reserved through a Beaker job (a recipe with the reservesys
 * task, or your own job XML), found again by a tag in the job whiteboard.
 * See docs/providers/beaker.md.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { httpTlsFields } from '../../lib/http-settings.js';
import { sshLoginFields } from '../../lib/ssh-login.js';
import { defineProvider, type ImplementationFor } from '../../lib/provider.js';
import { Duration } from '../../lib/settings.js';

const Task = lazySchema(() =>
  z.union([z.string().min(1), z.strictObject({ name: z.string().min(1), params: z.record(z.string(), z.union([z.string(), z.number()])).optional() })]),
);

export const BeakerArgs = lazySchema(() =>
  z
    .strictObject({
      /** A whole job XML (inline). The hostbroker tag is added to its whiteboard. */
      jobXml: z.string().min(1).optional().describe('a complete job XML to submit (inline)'),
      /** Path of a job XML file. */
      jobXmlFile: z.string().min(1).optional().describe('path of a job XML file to submit'),
      /** Distro name, e.g. `RHEL-9.4.0`. */
      distro: z.string().min(1).optional().describe('distro name, e.g. RHEL-9.4.0 (required without job XML)'),
      /** Distro family, e.g. `RedHatEnterpriseLinux9`; used when no distro name is given. */
      family: z.string().min(1).optional().describe('distro family (instead of a distro name: the latest of the family)'),
      /** Distro tag, e.g. `RELEASED`, with `family`. */
      tag: z.string().min(1).optional().describe('distro tag, with family (e.g. RELEASED)'),
      variant: z.string().min(1).optional().describe('distro variant, e.g. BaseOS or Server'),
      arch: z.string().min(1).default('x86_64').describe('architecture (default x86_64)'),
      /** Host filter: an XML fragment for `<hostRequires>`, or `{ key: value }` pairs (`<key op="=" value=".."/>`). */
      hostRequires: z
        .union([z.string().min(1), z.record(z.string().regex(/^[A-Za-z_][\w.-]*$/, 'use an XML element name'), z.union([z.string(), z.number()]))])
        .optional()
        .describe('host filter: XML fragment, or {element: value} pairs'),
      /** A specific system (`<hostRequires force="fqdn"/>`). */
      force: z.string().min(1).optional().describe('reserve this system (FQDN), ignoring its pools'),
      /** Kickstart snippets appended to the kickstart. */
      ksAppend: z
        .union([z.string(), z.array(z.string())])
        .optional()
        .describe('kickstart snippet(s) to append'),
      ksMeta: z.string().optional().describe('kickstart metadata (ks_meta)'),
      kernelOptions: z.string().optional().describe('kernel options for the installation'),
      kernelOptionsPost: z.string().optional().describe('kernel options after installation'),
      /** Tasks run before the reservation, by name or `{ name, params }`. */
      tasks: z.array(Task).default([]).describe('tasks to run before reserving: names or {name, params}'),
      /** How long the system stays reserved (RESERVETIME of /distribution/reservesys). */
      reserveDuration: Duration.default('24h').describe('how long the system stays reserved (default 24h)'),
      whiteboard: z.string().max(1000).optional().describe('job whiteboard text (the hostbroker tag is added)'),
      retentionTag: z.string().default('scratch').describe('retention tag (default scratch)'),
      product: z.string().optional().describe('product, for retention tags that need one'),
      /** Display name. */
      name: z.string().optional().describe('display name of the host'),
    })
    .refine((a) => [a.jobXml, a.jobXmlFile].filter(Boolean).length <= 1, 'give either jobXml or jobXmlFile, not both')
    .refine((a) => a.jobXml || a.jobXmlFile || a.distro || a.family, 'give a distro (or family), or a job XML'),
);
export type BeakerArgs = z.output<typeof BeakerArgs>;

export const BeakerInstance = lazySchema(() =>
  z.strictObject({
    /** Base URL of the Beaker server, e.g. `https://beaker.example.com/bkr`. */
    url: z.url(),
    /** Login for password authentication (`/auth/login_password`). */
    username: z.string().min(1).optional(),
    /** Password; prefer `passwordEnv`. Never written to the inventory or logs. */
    password: z.string().min(1).optional(),
    /** Environment variable holding the password. */
    passwordEnv: z.string().default('BEAKER_PASSWORD'),
    /** OAuth2 access token (`/auth/login_oauth2`), instead of a password; prefer `tokenEnv`. */
    token: z.string().min(1).optional(),
    tokenEnv: z.string().default('BEAKER_TOKEN'),
    /** Act on behalf of this user (needs the proxy_auth permission). */
    proxyUser: z.string().optional(),
    /** How often to look at a job while waiting for the reservation. */
    pollInterval: Duration.default('30s'),
    /** Limit for the wait until Reserved; default: `checkout.timeout`. */
    reserveTimeout: Duration.optional(),
    /** Task that installs the distro, put first in generated jobs (empty: none). */
    installTask: z.string().default('/distribution/check-install'),
    /** `cancel` the job on checkin (default), or `return` the reservation by ending its watchdog. */
    release: z.enum(['cancel', 'return']).default('cancel'),
    /** How many of the user's latest jobs `sync` and tag lookups read. */
    syncLimit: z.number().int().min(1).max(1000).default(100),
    /** SSH login for reserved systems (defaults to the `ssh` settings). */
    ...sshLoginFields,
    requestTimeout: Duration.default('60s'),
    retries: z.number().int().min(0).max(10).default(3),
    ...httpTlsFields,
  }),
);
export type BeakerInstance = z.output<typeof BeakerInstance>;

export const beaker = defineProvider({
  name: 'beaker',
  description: 'A system reserved through a Beaker job (generated from arguments, or your job XML); checkin cancels the job.',
  args: BeakerArgs,
  instance: BeakerInstance,
  load: async (): Promise<ImplementationFor<typeof BeakerArgs, typeof BeakerInstance>> => (await import('./provider.js')).default,
});
