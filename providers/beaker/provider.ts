/**
 * Beaker implementation: submit a job (generated or the user's, tagged in its whiteboard), wait
 * until its recipe's system is reserved, hand out that system; checkin cancels the job (or ends
 * the reservation's watchdog), extend moves the watchdog, sync reads the user's unfinished jobs.
 * @module
 */
import { sshLogin } from '../../lib/ssh-login.js';
import { readFile } from 'node:fs/promises';
import { abortedBeforeStart } from '../../lib/concurrency.js';
import { ProviderError, TimeoutError, UserInputError } from '../../lib/errors.js';
import { sleep } from '../../lib/http.js';
import { type DiscoveredHost, type ProviderContext, type ProvisionedHost, implementProvider } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { toMs } from '../../lib/settings.js';
import { BeakerClient, FINISHED, fqdnOf, isReserved, type Job, type Recipe } from './client.js';
import { type BeakerInstance, beaker } from './definition.js';
import { buildJobXml, parseWhiteboard, reserves, reserveSeconds, reserveTimeOf, tagJobXml } from './jobxml.js';

// One logged-in client per instance, shared by concurrent checkouts.
const clients = new Map<string, BeakerClient>();

type Context = ProviderContext<BeakerInstance>;

function clientFor(ctx: Context): BeakerClient {
  const key = `${ctx.provider}\0${ctx.instance}\0${JSON.stringify(ctx.instanceSettings)}`;
  let client = clients.get(key);
  if (!client) {
    client = BeakerClient.fromContext(ctx);
    clients.set(key, client);
  }
  return client;
}

const jobIdOf = (record: HostRecord): number | undefined => {
  const fromId = /^J:(\d+)$/.exec(record.providerId ?? '')?.[1];
  const fromData = record.data?.jobId;
  return fromId ? Number(fromId) : typeof fromData === 'number' ? fromData : undefined;
};

const recipesOf = (job: Job): Recipe[] => job.recipesets.flatMap((s) => s.recipes);

/** Runs `fn` over `items`, at most `limit` at once. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

/** The user's latest jobs that are not finished, with their tags. */
async function unfinishedJobs(client: BeakerClient, signal: AbortSignal): Promise<Job[]> {
  const ids = await client.myJobIds(client.settings.syncLimit, signal);
  const jobs = await mapLimit(ids, 8, (id) => client.job(id, signal));
  return jobs.filter((j): j is Job => !!j && !FINISHED.has(j.status));
}

async function findJob(client: BeakerClient, recordId: string, signal: AbortSignal): Promise<Job | undefined> {
  return (await unfinishedJobs(client, signal)).find((j) => parseWhiteboard(j.whiteboard)?.id === recordId);
}

async function waitReserved(client: BeakerClient, jobId: number, ctx: Context): Promise<{ job: Job; recipe: Recipe; fqdn: string }> {
  const settings = client.settings;
  const limit = toMs(settings.reserveTimeout ?? ctx.settings.checkout.timeout);
  const interval = toMs(settings.pollInterval);
  const deadline = Date.now() + limit;
  let last = 'New';
  for (;;) {
    if (ctx.signal.aborted) throw new ProviderError(ctx.provider, `the checkout was given up while J:${jobId} was ${last}.`);
    let job: Job | undefined;
    let failed = false;
    try {
      job = await client.job(jobId, ctx.signal);
    } catch (error) {
      failed = true;
      // A flaky server should not lose a job that may still get its system.
      if (!(error as ProviderError).retryable) throw error;
      ctx.logger.warn(`reading J:${jobId} failed, trying again: ${(error as Error).message}`);
    }
    if (job) {
      const recipe = recipesOf(job)[0];
      if (!recipe) throw new ProviderError(ctx.provider, `J:${jobId} has no recipe; check the job XML.`);
      last = recipe.status;
      const fqdn = fqdnOf(recipe);
      if (isReserved(recipe) && fqdn) return { job, recipe, fqdn };
      if (FINISHED.has(recipe.status) || FINISHED.has(job.status)) {
        throw new ProviderError(
          ctx.provider,
          `recipe R:${recipe.id} of J:${jobId} ended ${recipe.status}${recipe.result ? ` (result ${recipe.result})` : ''} before its system was reserved` +
            `${fqdn ? ` on ${fqdn}` : ''}; see ${client.settings.url.replace(/\/$/, '')}/recipes/${recipe.id} for the logs.`,
          { status: recipe.status },
        );
      }
    } else if (!failed) {
      // 404: deleted under us.
      throw new ProviderError(ctx.provider, `J:${jobId} disappeared while waiting for its reservation (deleted?).`, { status: 404 });
    }
    if (Date.now() + interval > deadline) {
      throw new TimeoutError(
        `[${ctx.provider}] J:${jobId} was not reserved within ${Math.round(limit / 1000)} s (recipe status: ${last}); it was cancelled. Raise beaker.reserveTimeout or checkout.timeout, or pick a less busy host filter.`,
        limit,
      );
    }
    await sleep(interval, ctx.signal);
  }
}

export default implementProvider(beaker, {
  async checkout(args, target, ctx): Promise<ProvisionedHost> {
    const { record } = target;
    if (ctx.signal.aborted) throw abortedBeforeStart(`checkout of ${record.name}`, ctx.signal);
    const client = clientFor(ctx);
    let xml: string;
    if (args.jobXml || args.jobXmlFile) {
      let source = args.jobXml;
      if (args.jobXmlFile) {
        try {
          source = await readFile(args.jobXmlFile, 'utf8');
        } catch (error) {
          throw new UserInputError(`beaker: cannot read the job XML file ${args.jobXmlFile}: ${(error as Error).message}.`, { cause: error });
        }
      }
      xml = tagJobXml(source!, record);
      if (!reserves(xml)) ctx.logger.warn('the job XML has no /distribution/reservesys task or <reservesys/>: its system will not stay reserved.');
    } else {
      xml = buildJobXml(args, record, client.settings.installTask);
    }
    // Not aborted mid-request: a job Beaker accepted but whose id we never read would be left
    // queued. An abort is seen right after, and the job is cancelled.
    const jobId = await client.submit(xml);
    ctx.logger.info(`submitted J:${jobId} for ${record.name}`);
    let reserved: Awaited<ReturnType<typeof waitReserved>>;
    try {
      reserved = await waitReserved(client, jobId, ctx);
    } catch (error) {
      // Whatever went wrong, the job must not keep (or later take) a system.
      await client
        .cancel(jobId, `hostbroker gave up: ${(error as Error).message}`.slice(0, 250))
        .catch((e: unknown) => ctx.logger.warn(`could not cancel J:${jobId}: ${(e as Error).message}`));
      throw error;
    }
    const { recipe, fqdn } = reserved;
    const seconds = args.jobXml || args.jobXmlFile ? reserveTimeOf(xml) : reserveSeconds(args);
    const ssh = ctx.settings.ssh;
    ctx.logger.info(`J:${jobId} reserved ${fqdn} for ${record.name}`);
    return {
      hostname: fqdn,
      name: args.name,
      providerId: `J:${jobId}`,
      connection: sshLogin(fqdn, client.settings, ssh),
      data: { jobId, recipeId: recipe.id, url: `${client.settings.url.replace(/\/$/, '')}/jobs/${jobId}` },
      ...(seconds ? { leaseExpires: new Date(Date.now() + seconds * 1000).toISOString() } : {}),
    };
  },

  async release(record, ctx): Promise<void> {
    const client = clientFor(ctx);
    let jobId = jobIdOf(record);
    let job = jobId !== undefined ? await client.job(jobId, ctx.signal) : await findJob(client, record.id, ctx.signal);
    if (!job || FINISHED.has(job.status)) return; // Already gone or done.
    jobId = job.id;
    if (client.settings.release === 'return') {
      const recipe = recipesOf(job).find(isReserved);
      if (recipe) {
        // Beaker's own "Return Reservation" (Recipe.return_reservation): a watchdog of 0 ends it now.
        await client.watchdog(recipe.id, 0, ctx.signal);
        return;
      }
    }
    await client.cancel(jobId, `released by hostbroker (record ${record.id})`, ctx.signal);
    job = await client.job(jobId, ctx.signal);
    ctx.logger.info(`cancelled J:${jobId}${job ? ` (now ${job.status})` : ''}`);
  },

  async extend(record, leaseExpires, ctx): Promise<void> {
    const client = clientFor(ctx);
    const seconds = Math.ceil((Date.parse(leaseExpires) - Date.now()) / 1000);
    if (!(seconds > 0)) throw new UserInputError(`beaker: the new lease end ${leaseExpires} is not in the future.`);
    let recipeId = typeof record.data?.recipeId === 'number' ? record.data.recipeId : undefined;
    if (recipeId === undefined) {
      const jobId = jobIdOf(record);
      const job = jobId !== undefined ? await client.job(jobId, ctx.signal) : await findJob(client, record.id, ctx.signal);
      recipeId = job ? recipesOf(job)[0]?.id : undefined;
    }
    if (recipeId === undefined) throw new ProviderError(ctx.provider, `no Beaker job holds record ${record.id} any more; nothing to extend.`, { status: 404 });
    await client.watchdog(recipeId, seconds, ctx.signal);
  },

  async discover(ctx): Promise<DiscoveredHost[]> {
    const client = clientFor(ctx);
    const out: DiscoveredHost[] = [];
    for (const job of await unfinishedJobs(client, ctx.signal)) {
      const tag = parseWhiteboard(job.whiteboard);
      if (!tag || tag.brokerId !== ctx.brokerId) continue;
      const recipe = recipesOf(job)[0];
      const fqdn = recipe ? (fqdnOf(recipe) ?? '') : '';
      out.push({
        id: tag.id,
        brokerId: tag.brokerId,
        owner: ctx.owner,
        hostname: fqdn,
        providerId: `J:${job.id}`,
        connection: { kind: 'ssh', host: fqdn, port: ctx.settings.ssh.port, username: client.settings.sshUsername ?? ctx.settings.ssh.username },
        data: { jobId: job.id, recipeId: recipe?.id, status: recipe?.status ?? job.status },
        recipe: { provider: ctx.provider, instance: ctx.instance, args: {} },
      });
    }
    return out;
  },

  async describe(ctx, topic): Promise<Record<string, unknown>> {
    const client = clientFor(ctx);
    const out: Record<string, unknown> = {};
    if (!topic || topic === 'distros') out.distros = await client.distroTrees({ limit: 50 }, ctx.signal);
    if (!topic || topic === 'jobs') {
      out.jobs = (await unfinishedJobs(client, ctx.signal)).map((j) => ({ id: `J:${j.id}`, status: j.status, whiteboard: j.whiteboard }));
    }
    return out;
  },

  async close(): Promise<void> {
    clients.clear();
  },
});
