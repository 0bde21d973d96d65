/**
 * The `tower` provider implementation: launch a workflow (or job template) per host, wait for it
 * resiliently, build the host from the job's artifacts, and release or extend it by launching
 * the configured release/extend workflows. Hosts a failed workflow did create are checked in
 * (default) or kept in the inventory, per `dangling`.
 * @module
 */
import { abortedBeforeStart } from '../../lib/concurrency.js';
import { type DanglingHost, ProviderError, UserInputError, asError, messageOf } from '../../lib/errors.js';
import {
  type DiscoveredHost,
  type HostContext,
  type ProviderContext,
  TAGS,
  defaultSshConnection,
  implementProvider,
  standardTags,
} from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { redact, scrub } from '../../lib/secrets.js';
import { FINISHED, type FailureReason, type JobRef, type TemplateKind, TowerApi, type TowerHost, parseVariables } from './api.js';
import { combineArtifacts, danglingNames, hostFromArtifacts } from './artifacts.js';
import { type Dangling, TOWER_OWN_KEYS, type TowerInstance, tower } from './definition.js';

/** Fields the provider keeps in `record.data`. */
interface TowerData {
  /** The launch that made (or is making) the host. */
  towerJob?: JobRef & { url?: string };
  /** Set once hosts of a failed launch were checked in or kept: nothing is left to release. */
  danglingHandled?: boolean;
  towerInventory?: string | number;
  [key: string]: unknown;
}

type Context = ProviderContext<TowerInstance>;

/** How far before a record's creation a launch for it is looked for (clock skew with Tower). */
const LAUNCH_LOOKBACK_MS = 10 * 60_000;

function apiOf(ctx: Context): TowerApi {
  return TowerApi.fromContext(ctx);
}

/** The workflow or job template named by launch arguments. */
function targetOf(args: { workflow?: string | undefined; job_template?: string | undefined }): { kind: TemplateKind; name: string } {
  if (args.workflow) return { kind: 'workflow', name: args.workflow };
  if (args.job_template) return { kind: 'job_template', name: args.job_template };
  throw new UserInputError('[tower] name a `workflow` or a `job_template` to launch.');
}

/** Extra vars: `extraVars`, then every argument that is not the provider's own. */
export function extraVarsOf(args: Record<string, unknown>): Record<string, unknown> {
  const own = new Set<string>(TOWER_OWN_KEYS);
  const vars: Record<string, unknown> = { ...((args.extraVars as Record<string, unknown> | undefined) ?? {}) };
  for (const [k, v] of Object.entries(args)) if (!own.has(k) && v !== undefined) vars[k] = v;
  return vars;
}

function reasonsText(reasons: FailureReason[]): string {
  if (reasons.length === 0) return 'Tower gave no reason';
  return reasons
    .slice(0, 5)
    .map((r) => `${r.job}${r.task ? ` / ${r.task}` : ''}: ${r.reason}`)
    .join('; ');
}

/** Notes facts on the host's record at once (ctx.checkpoint), so a killed process leaves them. */
async function note(ctx: HostContext<TowerInstance>, data: Partial<TowerData>): Promise<void> {
  try {
    await ctx.checkpoint(data);
  } catch (error) {
    ctx.logger.warn('tower: could not note the launch on its record', { error: messageOf(error) });
  }
}

/** Launches the release workflow for one VM name and waits for it. */
async function releaseByName(api: TowerApi, name: string, record: HostRecord | undefined, ctx: Context): Promise<void> {
  const template = await api.template('workflow', api.settings.releaseWorkflow);
  const recipeArgs = record ? extraVarsOf(record.recipe.args) : {};
  const vars = { ...recipeArgs, source_vm: name, ...(record ? { hostbroker_tags: standardTags(record) } : {}) };
  const inventoryRef =
    (record?.data as TowerData | undefined)?.towerInventory ?? (record?.recipe.args.inventory as string | number | undefined) ?? api.settings.inventory;
  const inventory = inventoryRef === undefined ? undefined : await api.inventoryId(inventoryRef);
  const job = await api.launch('workflow', template, vars, inventory);
  ctx.logger.info(`tower: releasing ${name} with ${api.settings.releaseWorkflow}`, { url: api.uiUrl(job) });
  const done = await api.wait(job, `release workflow ${api.settings.releaseWorkflow} for ${name}`);
  if (done.status !== 'successful') {
    const reasons = await api.failureReasons(job).catch(() => []);
    throw new ProviderError(
      'tower',
      scrub(
        `release workflow ${api.settings.releaseWorkflow} for ${name} ended ${done.status}: ${reasonsText(reasons)}. See ${api.uiUrl(job)}; remove the host by hand if it is still there.`,
      ),
    );
  }
}

/**
 * Checks in hosts a failed launch did create, or names them for the Broker to keep; returns a
 * sentence for the error, and the hosts to keep.
 */
async function handleDangling(
  api: TowerApi,
  names: string[],
  mode: Dangling,
  record: HostRecord,
  ctx: HostContext<TowerInstance>,
): Promise<{ text: string; keep?: DanglingHost[] }> {
  if (names.length === 0) {
    await note(ctx, { danglingHandled: true });
    return { text: 'it created no host that needs cleaning up' };
  }
  if (mode === 'keep') {
    const towerInventory = (record.recipe.args.inventory as string | number | undefined) ?? api.settings.inventory;
    const data = towerInventory !== undefined ? { towerInventory } : {};
    await note(ctx, { danglingHandled: true });
    return {
      text: `the host(s) it did create were kept in the inventory (marked kept): ${names.join(', ')}; check them in when done`,
      keep: names.map((name) => ({ name, hostname: name, providerId: name, data })),
    };
  }
  const failures: string[] = [];
  await Promise.all(
    names.map(async (name) => {
      try {
        await releaseByName(api, name, record, ctx);
      } catch (error) {
        failures.push(`${name} (${messageOf(error)})`);
      }
    }),
  );
  if (failures.length === 0) {
    await note(ctx, { danglingHandled: true });
    return { text: `the host(s) it did create were checked in: ${names.join(', ')}` };
  }
  return { text: `checking in the host(s) it did create failed for ${failures.join('; ')}; they may still exist in Tower` };
}

/** A failed checkout's error, with the hosts to keep (if any) for the Broker to record. */
function failed(message: string, cleanup: { text: string; keep?: DanglingHost[] }, status?: string): ProviderError {
  return new ProviderError('tower', scrub(message.replace('%cleanup%', `${cleanup.text[0]!.toUpperCase()}${cleanup.text.slice(1)}`)), {
    ...(status !== undefined ? { status } : {}),
    ...(cleanup.keep ? { dangling: cleanup.keep } : {}),
  });
}

/** Launches a template and waits for it; returns the job and its final state. */
async function launchAndWait(api: TowerApi, args: Record<string, unknown>, ctx: Context, host?: { record: HostRecord; ctx: HostContext<TowerInstance> }) {
  const { kind, name } = targetOf(args as { workflow?: string; job_template?: string });
  const template = await api.template(kind, name);
  const inventoryRef = (args.inventory as string | number | undefined) ?? api.settings.inventory;
  const inventory = inventoryRef === undefined ? undefined : await api.inventoryId(inventoryRef);
  const vars = extraVarsOf(args);
  if (host) {
    vars.hostbroker_tags = standardTags(host.record);
    vars.hostbroker_id = host.record.id;
  }
  const job = await api.launch(kind, template, vars, inventory);
  const url = api.uiUrl(job);
  if (host) await note(host.ctx, { towerJob: { ...job, url }, ...(inventoryRef !== undefined ? { towerInventory: inventoryRef } : {}) });
  ctx.logger.info(`tower: launched ${kind === 'workflow' ? 'workflow' : 'job template'} ${name}`, { job: job.id, url });
  const done = await api.wait(job, `${kind === 'workflow' ? 'workflow' : 'job template'} ${name} (job ${job.id})`);
  return { kind, name, job, url, done, inventoryRef };
}

export default implementProvider(tower, {
  async checkout(args, target, ctx) {
    const { record } = target;
    if (ctx.signal.aborted) throw abortedBeforeStart(`checkout of ${record.name}`, ctx.signal);
    const api = apiOf(ctx);
    const mode = args.dangling ?? api.settings.dangling;
    const strategy = args.artifacts ?? api.settings.artifacts;
    const { name, job, url, done, inventoryRef } = await launchAndWait(api, args as Record<string, unknown>, ctx, { record, ctx });

    const jobs = await api.childArtifacts(job);
    if (done.status !== 'successful') {
      const reasons = await api.failureReasons(job).catch((e: unknown) => [{ job: name, reason: `(could not read the failure: ${messageOf(e)})` }]);
      const why = reasonsText(reasons);
      const cleanup = await handleDangling(api, danglingNames(jobs), mode, record, ctx);
      throw failed(`${name} (job ${job.id}) ended ${done.status}: ${why}. %cleanup%. See ${url}`, cleanup, done.status);
    }

    const host = hostFromArtifacts(combineArtifacts(jobs, strategy));
    if (!host.hostname) {
      const cleanup = await handleDangling(api, danglingNames(jobs), mode, record, ctx);
      throw failed(
        `${name} (job ${job.id}) succeeded but its artifacts name no host (no \`fqdn\`/\`hostname\` key, in \`_broker_facts\` or at the top level); make the workflow publish one with set_stats. %cleanup%. See ${url}`,
        cleanup,
      );
    }
    const towerInventory = host.facts.tower_inventory ?? inventoryRef;
    const data: TowerData = {
      towerJob: { ...job, url },
      template: name,
      ...(towerInventory !== undefined ? { towerInventory: towerInventory as string | number } : {}),
      ...(host.hostType ? { hostType: host.hostType } : {}),
      ...(host.facts.os_distribution ? { os_distribution: host.facts.os_distribution } : {}),
      ...(host.facts.os_distribution_version ? { os_distribution_version: host.facts.os_distribution_version } : {}),
      facts: host.facts,
      ...(Object.keys(host.args).length ? { brokerArgs: host.args } : {}),
    };
    return {
      hostname: host.hostname,
      name: host.name ?? record.name,
      providerId: host.name ?? host.hostname,
      connection: defaultSshConnection(host.hostname, ctx),
      data,
    };
  },

  // Given the record as stored now: the launch checkout noted (towerJob) is on it.
  async release(current, ctx) {
    const api = apiOf(ctx);
    const data = current.data as TowerData;
    if (data.danglingHandled) return;
    if (current.providerId) return releaseByName(api, current.providerId, current, ctx);

    // Still provisioning (or killed mid-checkout): find its launch, stop it, release what it made.
    let job = data.towerJob ? { kind: data.towerJob.kind, id: data.towerJob.id } : undefined;
    if (!job) {
      const { kind, name } = targetOf(current.recipe.args as { workflow?: string; job_template?: string });
      // Clocks differ: look a little before the record was written.
      const since = new Date(Date.parse(current.createdAt) - LAUNCH_LOOKBACK_MS).toISOString();
      job = (await api.launchesFor(kind, name, current.id, since))[0];
    }
    if (!job) {
      ctx.logger.info(`tower: no launch found for record ${current.id}; nothing to release`);
      return;
    }
    let state = await api.job(job);
    if (!FINISHED.has(state.status)) {
      await api.cancel(job);
      state = await api.wait(job, `canceling job ${job.id} of record ${current.id}`);
    }
    const jobs = await api.childArtifacts(job);
    const names = new Set(danglingNames(jobs));
    if (state.status === 'successful') {
      const host = hostFromArtifacts(combineArtifacts(jobs, 'last'));
      if (host.name) names.add(host.name);
    }
    const errors: Error[] = [];
    await Promise.all(
      [...names].map((name) =>
        releaseByName(api, name, current, ctx).catch((e: unknown) => {
          errors.push(asError(e));
        }),
      ),
    );
    if (errors.length) throw errors[0];
  },

  async extend(record, leaseExpires, ctx) {
    const api = apiOf(ctx);
    const name = record.providerId ?? record.name;
    const template = await api.template('workflow', api.settings.extendWorkflow);
    const seconds = Math.max(0, Math.round((Date.parse(leaseExpires) - Date.now()) / 1000));
    const inventoryRef = (record.data as TowerData).towerInventory ?? api.settings.inventory;
    const inventory = inventoryRef === undefined ? undefined : await api.inventoryId(inventoryRef);
    const job = await api.launch(
      'workflow',
      template,
      {
        target_vm: name,
        new_expire_time: `+${seconds}`,
        lease_expires: leaseExpires,
        hostbroker_tags: { ...standardTags(record), [TAGS.lease]: leaseExpires },
      },
      inventory,
    );
    const done = await api.wait(job, `extend workflow ${api.settings.extendWorkflow} for ${name}`);
    if (done.status !== 'successful') {
      const reasons = await api.failureReasons(job).catch(() => []);
      throw new ProviderError(
        'tower',
        scrub(`extend workflow ${api.settings.extendWorkflow} for ${name} ended ${done.status}: ${reasonsText(reasons)}. See ${api.uiUrl(job)}`),
      );
    }
  },

  async discover(ctx) {
    const api = apiOf(ctx);
    // A configured username syncs that user's hosts; otherwise the token's user (or the local owner).
    const user = api.settings.username ?? (await api.me());
    const owners = new Set(api.settings.username ? [user] : [user, ctx.owner]);
    let inventories: Array<{ id: number; name: string }>;
    if (api.settings.inventory !== undefined) {
      const id = await api.inventoryId(api.settings.inventory);
      inventories = [{ id, name: (await api.inventoryName(id)) ?? String(api.settings.inventory) }];
    } else {
      // Broker's convention without a configured inventory: the inventories named after the user.
      inventories = (await api.inventories()).filter((i) => i.name.includes(user));
    }
    const hosts: Array<{ host: TowerHost; inventory: string }> = [];
    for (const inv of inventories) for (const host of await api.hosts(inv.id)) hosts.push({ host, inventory: inv.name });
    const out: DiscoveredHost[] = [];
    // Facts are one request per host: a few at a time.
    for (let i = 0; i < hosts.length; i += 8) {
      const batch = await Promise.all(hosts.slice(i, i + 8).map(({ host, inventory }) => discovered(api, host, inventory, owners, user, ctx)));
      for (const d of batch) if (d) out.push(d);
    }
    return out;
  },

  actions: {
    async run(args, ctx) {
      const api = apiOf(ctx);
      const { kind, name, job, url, done } = await launchAndWait(api, args, ctx);
      if (done.status !== 'successful') {
        const reasons = await api.failureReasons(job).catch(() => []);
        throw new ProviderError('tower', scrub(`${name} (job ${job.id}) ended ${done.status}: ${reasonsText(reasons)}. See ${url}`), { status: done.status });
      }
      const artifacts = combineArtifacts(await api.childArtifacts(job), args.artifacts ?? api.settings.artifacts);
      return { kind, name, id: job.id, status: done.status, url, artifacts: redact(artifacts) };
    },
  },

  async describe(ctx, topic) {
    const api = apiOf(ctx);
    const t = topic?.trim();
    if (!t) return { workflows: await api.launchable('workflow'), jobTemplates: await api.launchable('job_template') };
    if (t === 'workflows') return { workflows: await api.launchable('workflow') };
    if (t === 'job_templates' || t === 'jobTemplates') return { jobTemplates: await api.launchable('job_template') };
    if (t === 'inventories') return { inventories: (await api.inventories()).map((i) => i.name) };
    const m = /^(workflow|job_template)[:=](.+)$/.exec(t);
    if (m) return api.variables(m[1] as TemplateKind, m[2]!.trim());
    try {
      return await api.variables('workflow', t);
    } catch (error) {
      if (!(error instanceof UserInputError)) throw error;
      return api.variables('job_template', t);
    }
  },
});

/** A Tower host as sync reports it; hosts that belong to another user are left out. */
async function discovered(
  api: TowerApi,
  host: TowerHost,
  inventory: string,
  owners: Set<string>,
  user: string,
  ctx: Context,
): Promise<DiscoveredHost | undefined> {
  const vars = parseVariables(host.variables);
  const tags = (vars.hostbroker_tags ?? {}) as Record<string, unknown>;
  const owner = (tags[TAGS.owner] ?? vars.owner) as string | undefined;
  if (owner !== undefined && !owners.has(owner)) return undefined;
  const facts = await api.facts(host.id);
  const brokerFacts = (facts._broker_facts ?? {}) as Record<string, unknown>;
  const openstack = vars.openstack as { metadata?: { fqdn?: unknown } } | undefined;
  const hostname = [vars.fqdn, facts.ansible_fqdn, openstack?.metadata?.fqdn, vars.ansible_host, host.name].find(
    (v): v is string => typeof v === 'string' && v !== '',
  )!;
  const brokerArgs = (facts._broker_args ?? {}) as Record<string, unknown>;
  const data: Record<string, unknown> = redact(
    {
      towerInventory: inventory,
      towerHostId: host.id,
      ...(vars.ansible_host ? { ip: vars.ansible_host } : {}),
      ...(facts.ansible_distribution ? { os_distribution: facts.ansible_distribution } : {}),
      ...(facts.ansible_distribution_version ? { os_distribution_version: facts.ansible_distribution_version } : {}),
      ...(Object.keys(brokerFacts).length ? { facts: brokerFacts } : {}),
    },
    'drop',
  );
  const id = tags[TAGS.id];
  const brokerId = tags[TAGS.broker];
  const lease = tags[TAGS.lease];
  return {
    hostname,
    name: host.name,
    providerId: host.name,
    connection: defaultSshConnection(hostname, ctx),
    data,
    ...(typeof id === 'string' ? { id } : {}),
    ...(typeof brokerId === 'string' ? { brokerId } : {}),
    ...(typeof lease === 'string' ? { leaseExpires: lease } : {}),
    owner: owner ?? user,
    ...(Object.keys(brokerArgs).length ? { recipe: { provider: 'tower', instance: ctx.instance, args: redact(brokerArgs, 'drop') } } : {}),
  };
}
