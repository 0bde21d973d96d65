/**
 * `broker.up()`: provisions every host of a topology, all providers at once, with the
 * provisioning config's strategy (`abort`: any failure releases everything; `retry`: failed hosts
 * are asked for again up to `max_retry` times, then everything is released).
 * @module
 */
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { basename, extname } from 'node:path';
import type { TopologyBroker } from './seam.js';
import { abortReason, abortedBeforeStart, mapSettled, signalOption } from '../concurrency.js';
import { AbortedError, BrokerError, PartialFailureError, UserInputError, asError, type FailureEntry } from '../errors.js';
import type { Host, HostClass } from '../../hosts/host.js';
import type { ProviderDefinition } from '../provider.js';
import type { DeploymentRecord } from '../records.js';
import { argNames, validateArgs } from '../requests.js';
import { redact } from '../secrets.js';
import { Deployment, destroyDeployment, type StoredDeployment, type StoredMember } from './deployment.js';
import { parseMetadata, topologyEntries, type TopologyEntry, type TopologyMetadata } from './metadata.js';
import { loadProvisioning, sectionFor, type ProvisioningInput } from './provisioning.js';

/** Progress of `up`, one event per host attempt. */
export interface UpProgressEvent {
  /** Hosts provisioned so far. */
  done: number;
  total: number;
  host: string;
  provider: string;
  /** `stopped`: its checkout was given up because another host failed or `signal` aborted. */
  outcome: 'ok' | 'failed' | 'retrying' | 'stopped';
  /** 1 for the first try. */
  attempt: number;
}

/** Options for `broker.up()`. */
export interface UpOptions<H extends Host = Host> {
  /** Provisioning config: an object or a YAML/JSON file; default the settings' `provisioning:`. */
  provisioning?: string | ProvisioningInput;
  /** Provider of hosts that no host, metadata or provisioning `default_provider` names. */
  provider?: string;
  /** Deployment name (default: the metadata's `name`, the metadata file's name, or generated). */
  name?: string;
  /** Class of the hosts. */
  hostClass?: HostClass<H>;
  /** Called as hosts are provisioned. */
  onProgress?: (event: UpProgressEvent) => void;
  /**
   * Gives the deployment up when aborted: checkouts still running are stopped (see
   * `CheckoutOptions.signal`), every host made so far is released, and `up` rejects with a
   * {@link AbortedError} saying what was released and what was kept.
   */
  signal?: AbortSignal;
}

interface Planned {
  entry: TopologyEntry;
  provider: string;
  args: Record<string, unknown>;
}

/** Provisions a topology; see {@link UpOptions}. */
export async function up<H extends Host>(
  broker: TopologyBroker<H>,
  metadataInput: string | TopologyMetadata,
  options: UpOptions<H> = {},
): Promise<Deployment<H>> {
  const signal = signalOption(options.signal);
  const metadata = parseMetadata(metadataInput);
  const providerNames = broker.providerNames();
  const provisioning = loadProvisioning(options.provisioning, broker.settings.provisioning, providerNames);
  const entries = topologyEntries(metadata);

  // Everything is resolved and validated before any provider is asked for anything.
  const plan: Planned[] = entries.map((entry) => {
    const provider = entry.provider ?? metadata.provider ?? provisioning.default_provider ?? options.provider;
    if (!provider) {
      throw new UserInputError(
        `host ${entry.fqdn} has no provider: set \`provider\` on the host or at the top of the metadata, \`default_provider\` in the provisioning config, or pass one (\`--provider\`).`,
      );
    }
    const definition = broker.definition(provider);
    const args = argsFor(definition, entry, sectionFor(provisioning, provider));
    try {
      return { entry, provider, args: validateArgs(definition, args, `topology host ${entry.fqdn}`) };
    } catch (error) {
      throw BrokerError.isInstance(error) ? error : new UserInputError(asError(error).message);
    }
  });

  const fileName =
    typeof metadataInput === 'string' && /\.(ya?ml|json)$/i.test(metadataInput.trim()) && !metadataInput.includes('\n')
      ? basename(metadataInput, extname(metadataInput))
      : undefined;
  const name = options.name ?? metadata.name ?? fileName ?? `deployment-${randomBytes(3).toString('hex')}`;
  const id = `dep-${randomBytes(6).toString('hex')}`;
  const stored: StoredDeployment = { document: redact(metadata) };
  if (provisioning.inventory_layout) stored.layout = provisioning.inventory_layout;
  if (provisioning.python) stored.python = provisioning.python;
  const record: DeploymentRecord = {
    id,
    name,
    createdAt: new Date().toISOString(),
    owner: broker.owner,
    metadata: stored,
    hosts: Object.fromEntries(plan.map((p) => [p.entry.fqdn, { ...p.entry } as Record<string, unknown>])),
  };
  if (signal?.aborted) throw abortedBeforeStart(`deployment ${name}`, signal);
  // Recorded before provisioning, so `destroy` finds what a killed process left behind.
  await broker.store.putDeployment(record);
  broker.logger.info(`deployment ${name} (${id}): provisioning ${plan.length} host(s)`, { providers: [...new Set(plan.map((p) => p.provider))] });

  const byProvider = new Map<string, Planned[]>();
  for (const p of plan) byProvider.set(p.provider, [...(byProvider.get(p.provider) ?? []), p]);

  const made = new Map<Planned, H>();
  const failures: FailureEntry[] = [];
  let givenUp = false;
  let done = 0;
  /** Checkouts stopped by the deployment's abort while running, and hosts never started. */
  let stopped = 0;
  let neverStarted = 0;
  // Aborted when the deployment is given up (a host failed for good, or the caller aborted), so
  // every provider's running checkouts stop instead of finishing only to be released.
  const stop = new AbortController();
  setMaxListeners(0, stop.signal); // one listener per running checkout
  const giveUp = (reason: Error): void => {
    givenUp = true;
    stop.abort(reason);
  };
  const onCallerAbort = (): void => giveUp(new AbortedError(`deployment ${name} was aborted${abortReason(signal!)}`, { reason: signal!.reason }));
  signal?.addEventListener('abort', onCallerAbort, { once: true });

  const runProvider = async (provider: string, items: Planned[]): Promise<void> => {
    const { strategy, max_retry } = sectionFor(provisioning, provider);
    let pending = items;
    for (let attempt = 1; ; attempt++) {
      const lastTry = strategy !== 'retry' || attempt > max_retry;
      /** Hosts whose checkout was given up because of the deployment's abort, not their own failure. */
      const halted = new Set<Planned>();
      const settled = await mapSettled(pending, broker.settings.checkout.concurrency, async (p) => {
        if (givenUp) {
          halted.add(p);
          neverStarted++;
          throw new BrokerError('not provisioned: the deployment was given up');
        }
        const request = { ...p.args, provider, deployment: id, signal: stop.signal, ...(options.hostClass ? { hostClass: options.hostClass } : {}) };
        try {
          return await broker.checkout(request);
        } catch (error) {
          if (stop.signal.aborted) {
            halted.add(p);
            stopped++;
          } else if (lastTry) giveUp(new BrokerError(`another host (${p.entry.fqdn}) failed`));
          throw error;
        }
      });
      const failed: Array<{ p: Planned; error: Error }> = [];
      settled.forEach((s, i) => {
        const p = pending[i]!;
        if (s.status === 'fulfilled') {
          made.set(p, s.value);
          options.onProgress?.({ done: ++done, total: plan.length, host: p.entry.fqdn, provider, outcome: 'ok', attempt });
        } else if (halted.has(p)) {
          options.onProgress?.({ done: ++done, total: plan.length, host: p.entry.fqdn, provider, outcome: 'stopped', attempt });
        } else failed.push({ p, error: asError(s.reason) });
      });
      if (!failed.length) return;
      const retry = strategy === 'retry' && attempt <= max_retry && !givenUp;
      for (const f of failed) {
        options.onProgress?.({
          done: retry ? done : ++done,
          total: plan.length,
          host: f.p.entry.fqdn,
          provider,
          outcome: retry ? 'retrying' : 'failed',
          attempt,
        });
      }
      if (!retry) {
        givenUp = true;
        const tries = strategy === 'retry' ? ` (after ${attempt} attempt${attempt > 1 ? 's' : ''})` : '';
        failures.push(...failed.map((f) => ({ target: `${f.p.entry.fqdn} [${provider}]${tries}`, error: f.error })));
        return;
      }
      broker.logger.warn(`deployment ${name}: ${failed.length} ${provider} host(s) failed; trying again (${attempt} of ${max_retry} retries)`, {
        hosts: failed.map((f) => f.p.entry.fqdn),
      });
      pending = failed.map((f) => f.p);
    }
  };

  try {
    await Promise.all([...byProvider].map(([provider, items]) => runProvider(provider, items)));
  } finally {
    signal?.removeEventListener('abort', onCallerAbort);
  }

  if (signal?.aborted) {
    const hosts = [...made.values()];
    let cleanup = '';
    try {
      await destroyDeployment(broker, id, hosts);
    } catch (error) {
      cleanup = asError(error).message;
    }
    const left = (await broker.store.list()).filter((r) => r.deployment === id);
    const own = failures.length ? `; failed before the abort: ${failures.map((f) => `${f.target}: ${f.error.message}`).join('; ')}` : '';
    const kept = left.length
      ? `; kept ${left.length} in the inventory because releasing failed (${left.map((r) => r.name).join(', ')}: ${cleanup || left.map((r) => r.lastError).join('; ')}); run \`hostbroker destroy ${id}\` later`
      : '';
    const keptIds = new Set(left.map((r) => r.id));
    throw new AbortedError(
      `deployment ${name} was aborted${abortReason(signal)}: ${hosts.length} host(s) that were provisioned and ${stopped} stopped checkout(s) were released, ${neverStarted} never started${kept}${own}.`,
      { released: hosts.filter((h) => !keptIds.has(h.id)).map((h) => h.name), kept: left.map((r) => r.id), neverStarted, reason: signal.reason },
    );
  }

  if (failures.length) {
    const hosts = [...made.values()];
    let cleanup: Error | undefined;
    try {
      await destroyDeployment(broker, id, hosts);
    } catch (error) {
      cleanup = asError(error);
      failures.push({ target: 'releasing the hosts that were provisioned', error: cleanup });
    }
    throw new PartialFailureError(
      `deployment ${name} failed: ${failures.length - (cleanup ? 1 : 0)} of ${plan.length} host(s) could not be provisioned; ` +
        (cleanup
          ? `some of the ${hosts.length} provisioned host(s) could not be released (run \`hostbroker destroy ${id}\`):`
          : `the ${hosts.length} that were provisioned${stopped ? ` and the ${stopped} whose checkouts were stopped` : ''} have been released:`),
      failures,
    );
  }

  const members = plan.map((p) => ({ entry: p.entry, host: made.get(p)! }));
  record.hosts = Object.fromEntries(members.map((m) => [m.entry.fqdn, { ...m.entry, recordId: m.host.id } satisfies StoredMember as Record<string, unknown>]));
  await broker.store.putDeployment(record);
  return new Deployment(broker, record, members);
}

/** A host's checkout arguments: the provider's own mapping, or `{ name }` plus the host's `args`. */
function argsFor(definition: ProviderDefinition, entry: TopologyEntry, section: ReturnType<typeof sectionFor>): Record<string, unknown> {
  if (definition.fromTopology) return { ...definition.fromTopology(entry, section), ...entry.args };
  const base: Record<string, unknown> = argNames(definition.args).includes('name') ? { name: entry.name } : {};
  return { ...base, ...entry.args };
}
