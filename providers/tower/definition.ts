/**
 * The `tower` provider: hosts made by Ansible Tower / AWX / Automation Controller workflows or
 * job templates, launched over the REST API v2 and built from the job's artifacts.
 * See `docs/providers/tower.md`.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { defineProvider, type ImplementationFor } from '../../lib/provider.js';
import { httpTlsFields } from '../../lib/http-settings.js';
import { Duration } from '../../lib/settings.js';

/** A Tower inventory by name or id. */
const InventoryRef = lazySchema(() => z.union([z.string().min(1), z.number().int().positive()]));

/** What happens to hosts a failed workflow did create. */
export const Dangling = lazySchema(() => z.enum(['checkin', 'keep']));
export type Dangling = z.infer<typeof Dangling>;

/** How artifacts of a workflow's jobs are combined: the last job's that has any, or all merged. */
export const ArtifactStrategy = lazySchema(() => z.enum(['last', 'merge']));

/**
 * Keys of {@link TowerArgs} that steer the provider; every other key is an extra var for the
 * workflow (as Broker does: `--workflow x --my-arg y` sends `my_arg: y`).
 */
export const TOWER_OWN_KEYS = ['workflow', 'job_template', 'inventory', 'extraVars', 'dangling', 'artifacts'] as const;

const launchFields = lazySchema(() => ({
  /** Name of the workflow job template to launch. */
  workflow: z.string().min(1).optional().describe('name of the workflow job template to launch'),
  /** Name of the job template to launch (instead of a workflow). */
  job_template: z.string().min(1).optional().describe('name of the job template to launch (instead of a workflow)'),
  /** Tower inventory to launch against (name or id); the instance setting or the template default otherwise. */
  inventory: InventoryRef.optional().describe('Tower inventory to launch against (name or id)'),
  /** Extra vars given as one object (merged under the other arguments). */
  extraVars: z.record(z.string(), z.unknown()).optional().describe('extra vars as one object; any other unknown argument is an extra var too'),
  /** How artifacts of the workflow's jobs are combined. */
  artifacts: ArtifactStrategy.optional().describe('combine job artifacts: last (default) or merge'),
}));

/** Checkout arguments: a workflow or job template, plus extra vars (unknown keys pass through). */
export const TowerArgs = lazySchema(() =>
  z
    .looseObject({
      ...launchFields,
      /** What to do with hosts a failed workflow did create: release them (default) or keep them in the inventory. */
      dangling: Dangling.optional().describe('hosts a failed workflow did create: checkin (default) or keep'),
    })
    .refine((a) => (a.workflow === undefined) !== (a.job_template === undefined), {
      message: 'name exactly one of `workflow` or `job_template`',
    }),
);
export type TowerArgs = z.output<typeof TowerArgs>;

/** Arguments of the `run` action: a workflow or job template that creates no host. */
export const TowerRunArgs = lazySchema(() =>
  z.looseObject(launchFields).refine((a) => (a.workflow === undefined) !== (a.job_template === undefined), {
    message: 'name exactly one of `workflow` or `job_template`',
  }),
);
export type TowerRunArgs = z.output<typeof TowerRunArgs>;

/** Settings of one `tower` instance (`tower.instances.<name>` in broker_settings.yaml). */
export const TowerInstance = lazySchema(() =>
  z.strictObject({
    /** URL of Tower/AWX, e.g. `https://tower.example.com`. */
    baseUrl: z.url(),
    /** API prefix: `/api/v2/` for Tower and AWX, `/api/controller/v2/` for AAP 2.5+. */
    apiPath: z
      .string()
      .regex(/^\/.*\/$/, 'start and end with /')
      .default('/api/v2/'),
    /** Personal access token (preferred). Never recorded or logged. */
    token: z.string().min(1).optional(),
    /** Name of an environment variable holding the token. */
    tokenEnv: z.string().min(1).optional(),
    /** User to log in as (with `password`), or, with a token, the user whose hosts `sync` lists. */
    username: z.string().min(1).optional(),
    /** Password for `username`. Never recorded or logged. */
    password: z.string().min(1).optional(),
    /** Name of an environment variable holding the password. */
    passwordEnv: z.string().min(1).optional(),
    /** Tower inventory to launch against and to sync from (name or id). */
    inventory: InventoryRef.optional(),
    /** Workflow launched to check a host in; it gets `source_vm: <host name>`. */
    releaseWorkflow: z.string().min(1).default('remove-vm'),
    /** Workflow launched to extend a lease; it gets `target_vm` and `new_expire_time`. */
    extendWorkflow: z.string().min(1).default('extend-vm'),
    /** Time between job status polls. */
    pollInterval: Duration.default('10s'),
    /** Longest wait for one workflow, connection errors and 5xx included. */
    maxWait: Duration.default('2h'),
    /** Limit of one API request. */
    requestTimeout: Duration.default('60s'),
    /** Attempts after a connection error or 5xx for one request. */
    retries: z.number().int().min(0).max(20).default(3),
    /** First pause between request attempts (doubles each time). */
    retryDelay: Duration.default('1s'),
    /** Default for the `dangling` argument. */
    dangling: Dangling.default('checkin'),
    /** Default for the `artifacts` argument. */
    artifacts: ArtifactStrategy.default('last'),
    /** Page size for list requests (help, sync). */
    pageSize: z.number().int().min(1).max(1000).default(200),
    ...httpTlsFields,
    default: z.boolean().optional(),
  }),
);
export type TowerInstance = z.output<typeof TowerInstance>;

const towerActions = {
  run: {
    description: 'Launch a workflow or job template that creates no host; returns its status and artifacts.',
    schema: TowerRunArgs,
  },
};

/** The `tower` provider definition. */
export const tower = defineProvider({
  name: 'tower',
  description: 'Hosts made by Ansible Tower / AWX workflows or job templates (REST API v2), built from the job artifacts.',
  args: TowerArgs,
  instance: TowerInstance,
  actions: towerActions,
  load: async (): Promise<ImplementationFor<typeof TowerArgs, typeof TowerInstance, typeof towerActions>> => (await import('./provider.js')).default,
});
