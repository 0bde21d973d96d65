/**
 * The `foreman` provider: hosts built by Foreman from a hostgroup (REST API v2), tagged with
 * host parameters, deleted on checkin. See `docs/providers/foreman.md`.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { httpTlsFields } from '../../lib/http-settings.js';
import { defineProvider, type ImplementationFor } from '../../lib/provider.js';
import { Duration } from '../../lib/settings.js';

/** Checkout arguments of the `foreman` provider. */
export const ForemanArgs = lazySchema(() =>
  z.strictObject({
    /** Hostgroup to build from: its title (e.g. `base/rhel9`) or id. */
    hostgroup: z.union([z.string().min(1), z.number().int().positive()]).describe('hostgroup title (e.g. base/rhel9) or id'),
    /** Short host name (the domain comes from the hostgroup); derived from the record name when omitted. */
    name: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'use lower-case letters, digits and -, at most 63 characters')
      .optional()
      .describe('short host name (derived from the record name when omitted)'),
    organizationId: z.number().int().positive().optional().describe('organization id (the instance setting otherwise)'),
    locationId: z.number().int().positive().optional().describe('location id (the instance setting otherwise)'),
    computeResourceId: z.number().int().positive().optional().describe('compute resource id (virtual hosts)'),
    computeProfileId: z.number().int().positive().optional().describe('compute profile id'),
    /** Extra host parameters (the hostbroker.* tags are always added). */
    parameters: z.record(z.string(), z.string()).optional().describe('extra host parameters'),
    /** Other host attributes sent as they are (e.g. `compute_attributes`, `interfaces_attributes`, `mac`). */
    hostAttributes: z.record(z.string(), z.unknown()).optional().describe('other host attributes for POST /api/hosts, sent as they are'),
    /** What to do with a host whose build failed or timed out: delete it (default) or keep it. */
    dangling: z.enum(['checkin', 'keep']).optional().describe('a host whose build failed: checkin (delete, default) or keep'),
  }),
);
export type ForemanArgs = z.output<typeof ForemanArgs>;

/** Settings of one `foreman` instance (`foreman.instances.<name>` in broker_settings.yaml). */
export const ForemanInstance = lazySchema(() =>
  z.strictObject({
    /** URL of Foreman, e.g. `https://foreman.example.com`. */
    baseUrl: z.url(),
    /** User to log in as; `sync` lists the hosts this user owns. */
    username: z.string().min(1),
    /** Password or personal access token of `username`. Never recorded or logged. */
    password: z.string().min(1).optional(),
    /** Name of an environment variable holding the password or token. */
    passwordEnv: z.string().min(1).optional(),
    organizationId: z.number().int().positive().optional(),
    locationId: z.number().int().positive().optional(),
    /** Reach hosts at their name (FQDN, default) or at the IP Foreman reports. */
    address: z.enum(['name', 'ip']).default('name'),
    /** Longest wait for a build to finish. */
    buildTimeout: Duration.default('1h'),
    /** Time between build status polls. */
    pollInterval: Duration.default('15s'),
    /** Limit of one API request. */
    requestTimeout: Duration.default('60s'),
    /** Attempts after a connection error or 5xx for one request. */
    retries: z.number().int().min(0).max(20).default(3),
    /** First pause between request attempts (doubles each time). */
    retryDelay: Duration.default('1s'),
    /** Default for the `dangling` argument. */
    dangling: z.enum(['checkin', 'keep']).default('checkin'),
    /** Page size for list requests. */
    perPage: z.number().int().min(1).max(1000).default(100),
    ...httpTlsFields,
    default: z.boolean().optional(),
  }),
);
export type ForemanInstance = z.output<typeof ForemanInstance>;

/** The `foreman` provider definition. */
export const foreman = defineProvider({
  name: 'foreman',
  description: 'Hosts built by Foreman from a hostgroup (REST API v2), tagged with host parameters; checkin deletes them.',
  args: ForemanArgs,
  instance: ForemanInstance,
  load: async (): Promise<ImplementationFor<typeof ForemanArgs, typeof ForemanInstance>> => (await import('./provider.js')).default,
});
