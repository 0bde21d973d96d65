/**
 * What the Broker hands a provider, made for tests: a {@link ProviderContext} with instance
 * settings parsed the way the Broker parses them, host contexts whose `checkpoint` and `reserve`
 * act on records kept in memory, and the records the Broker would write. Call a provider's
 * implementation directly with these, without a Broker or an inventory.
 *
 * ```ts
 * const t = await testContext(myProvider, { instanceSettings: { endpoint: 'http://127.0.0.1:8080' } });
 * const impl = await myProvider.load();
 * const record = intentRecord(t);
 * const host = await impl.checkout({}, { record, index: 0, count: 1 }, testHostContext(t, record));
 * await impl.release(t.records.get(record.id)!, testHostContext(t, record));
 * await t.cleanup();
 * ```
 * @module hostbroker/testing
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Broker } from '../broker/index.js';
import { InventoryError } from '../errors.js';
import { newRecordId, shortId } from '../identity.js';
import { createLogger, type Logger } from '../logger.js';
import type { AnyProviderDefinition, HostContext, InstanceOf, ProvisionedHost, ProviderContext } from '../provider.js';
import type { HostRecord } from '../records.js';
import { validateInstance } from '../requests.js';
import { redact } from '../secrets.js';
import { parseSettings, resolveInstance, type SettingsInput } from '../settings.js';

/** Options of {@link testContext}. */
export interface TestContextOptions {
  /**
   * The instance's settings as a user writes them; parsed by the definition's `instance` schema
   * (a SettingsError names `<provider>.instances.<instance>.<key>`, as the Broker's does). Without
   * them, the instance is resolved from `settings` (or the Broker's) as the Broker does.
   */
  instanceSettings?: Record<string, unknown>;
  /** Instance name (default: the settings' default instance, or `default`). */
  instance?: string;
  /** Settings as a user writes them (`ssh`, the provider's section, ...). */
  settings?: SettingsInput;
  /** Take settings, directory, broker id, owner and logger from this Broker instead. */
  broker?: Broker;
  /** Broker directory (default: a new temporary one, removed by `cleanup()`). */
  directory?: string;
  brokerId?: string;
  owner?: string;
  /** The context's signal (default: one never aborted). */
  signal?: AbortSignal;
}

/** A provider context for tests, with the records its host contexts write. */
export interface TestContext<Instance = Record<string, unknown>> {
  /** The context for calls about no one host (inventory, actions, describe, transport). */
  readonly ctx: ProviderContext<Instance>;
  readonly directory: string;
  /** Lines the logger wrote (level debug), e.g. to check that no secret is logged. */
  readonly logLines: string[];
  /** The records, by id, as the Broker would store them (what `checkpoint` wrote included). */
  readonly records: Map<string, HostRecord>;
  /** Claims made through `reserve`: resource → record id (the provider's pool). */
  readonly claims: Map<string, string>;
  /** Forgets a record and its claims, as the Broker does after a release. */
  forget(recordId: string): void;
  /** Removes the temporary directory (when this context made it). */
  cleanup(): Promise<void>;
}

/** A provider context for `definition`, its instance settings parsed as the Broker parses them. */
export async function testContext<D extends AnyProviderDefinition>(
  definition: D,
  options: TestContextOptions = {},
): Promise<TestContext<InstanceOf<NonNullable<D['instance']>>>> {
  const logLines: string[] = [];
  const broker = options.broker;
  const made = !broker && !options.directory ? await mkdtemp(join(tmpdir(), `hb-${definition.name}-`)) : undefined;
  const directory = broker?.directory ?? options.directory ?? made!;
  const settings = broker?.settings ?? parseSettings((options.settings ?? {}) as Record<string, unknown>, [definition.name]);
  const resolved = options.instanceSettings
    ? { name: options.instance ?? 'default', values: options.instanceSettings }
    : resolveInstance(settings, definition.name, options.instance);
  const logger: Logger = broker?.logger ?? createLogger('debug', (line) => logLines.push(line));
  const records = new Map<string, HostRecord>();
  const claims = new Map<string, string>();
  const ctx: ProviderContext = {
    provider: definition.name,
    instance: resolved.name,
    instanceSettings: validateInstance(definition, resolved.name, resolved.values),
    settings,
    directory,
    brokerId: broker?.brokerId ?? options.brokerId ?? 'broker-test-1',
    owner: broker?.owner ?? options.owner ?? 'tester',
    logger,
    signal: options.signal ?? new AbortController().signal,
    holders: async () => {
      const out = new Map<string, HostRecord>();
      for (const [resource, id] of claims) {
        const r = records.get(id);
        if (r) out.set(resource, structuredClone(r));
      }
      return out;
    },
  };
  return {
    ctx: ctx as ProviderContext<never>,
    directory,
    logLines,
    records,
    claims,
    forget(recordId) {
      records.delete(recordId);
      for (const [resource, id] of claims) if (id === recordId) claims.delete(resource);
    },
    cleanup: async () => {
      if (made) await rm(made, { recursive: true, force: true });
    },
  };
}

/**
 * The context of a call about one host, as the Broker makes it: `checkpoint` merges into the
 * stored record, `reserve` claims from the provider's pool for it. The record must be in
 * `t.records` (see {@link intentRecord}).
 */
export function testHostContext<Instance>(
  t: TestContext<Instance>,
  record: HostRecord | string,
  options: { signal?: AbortSignal } = {},
): HostContext<Instance> {
  const id = typeof record === 'string' ? record : record.id;
  const stored = (): HostRecord => {
    const r = t.records.get(id);
    if (!r) throw new InventoryError(`the record ${id} is not in the test context (checked in, or never added with intentRecord()).`);
    return r;
  };
  return {
    ...t.ctx,
    ...(options.signal ? { signal: options.signal } : {}),
    checkpoint: async (data) => {
      const r = stored();
      r.data = { ...r.data, ...redact(data, 'drop') };
      return structuredClone(r);
    },
    reserve: async (candidates) => {
      stored();
      for (const [resource, holder] of t.claims) if (holder === id && candidates.includes(resource)) return resource;
      const free = candidates.find((c) => !t.claims.has(c));
      if (free !== undefined) t.claims.set(free, id);
      return free;
    },
  };
}

/** An intent record (state `provisioning`) as the Broker writes it before checkout; kept in `t.records`. */
export function intentRecord(t: TestContext<unknown>, fields: Partial<HostRecord> = {}): HostRecord {
  const { ctx } = t;
  const record: HostRecord = {
    id: newRecordId(),
    name: `${ctx.provider}-${shortId()}`,
    hostname: '',
    provider: ctx.provider,
    instance: ctx.instance,
    state: 'provisioning',
    recipe: { provider: ctx.provider, instance: ctx.instance, args: {} },
    owner: ctx.owner,
    brokerId: ctx.brokerId,
    createdAt: new Date().toISOString(),
    data: {},
    pid: process.pid,
    machine: hostname(),
    ...fields,
  };
  t.records.set(record.id, structuredClone(record));
  return record;
}

/** The record the Broker stores once checkout returned `host` (state `ready`); kept in `t.records`. */
export function readyRecord(t: TestContext<unknown>, record: HostRecord, host: ProvisionedHost): HostRecord {
  const noted = t.records.get(record.id)?.data ?? record.data;
  const ready: HostRecord = {
    ...record,
    hostname: host.hostname,
    name: host.name ?? record.name,
    connection: host.connection,
    data: { ...noted, ...redact(host.data ?? {}, 'drop') },
    state: 'ready',
  };
  if (host.providerId) ready.providerId = host.providerId;
  if (host.leaseExpires) ready.leaseExpires = host.leaseExpires;
  t.records.set(ready.id, structuredClone(ready));
  return ready;
}
