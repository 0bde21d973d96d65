/**
 * What the Broker does for providers under contract v2: it parses instance settings once, keeps
 * what `ctx.checkpoint` noted, makes `ctx.reserve` exclusive, records the hosts a failed checkout
 * left behind (`ProviderError.dangling`) as kept, dispatches typed actions, and reaps by its own
 * rule. The provider here keeps its "hosts" in a Map, so nothing but the Broker is under test.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Host } from '../hosts/host.js';
import { Broker } from '../lib/broker/index.js';
import { BrokerError, ProviderError, SettingsError } from '../lib/errors.js';
import { type ImplementationFor, TAGS, defineProvider, implementProvider } from '../lib/provider.js';
import type { HostRecord } from '../lib/records.js';
import { Duration } from '../lib/settings.js';
import { rejection } from './helpers/rejection.js';

const Args = z.strictObject({ fail: z.enum(['after-checkpoint', 'dangling']).optional(), pool: z.array(z.string()).optional(), name: z.string().optional() });
const Instance = z.strictObject({ zone: z.string().default('z1'), limit: z.number().int().min(1).default(10), reapGrace: Duration.default(0) });
const actions = { echo: { description: 'returns its arguments', schema: z.strictObject({ text: z.string(), times: z.number().int().default(1) }) } };

/** The service the provider talks to: resource id → tags. */
let resources: Map<string, Record<string, string>>;
let released: HostRecord[];
let seenSettings: unknown[];
let actionCalls: unknown[];

const definition = defineProvider({
  name: 'mapped',
  description: 'test: hosts are entries of a Map',
  args: Args,
  instance: Instance,
  actions,
  load: async (): Promise<ImplementationFor<typeof Args, typeof Instance, typeof actions>> => implementation,
});

const implementation = implementProvider(definition, {
  async checkout(args, { record }, ctx) {
    seenSettings.push(ctx.instanceSettings);
    let claim: string | undefined;
    if (args.pool) {
      claim = await ctx.reserve(args.pool);
      if (!claim) throw new ProviderError('mapped', `all of ${args.pool.join(', ')} are taken`, { retryable: true });
    }
    const id = `r-${record.id}`;
    resources.set(id, {
      [TAGS.id]: record.id,
      [TAGS.broker]: record.brokerId,
      created: record.createdAt,
      ...(record.leaseExpires ? { [TAGS.lease]: record.leaseExpires } : {}),
    });
    await ctx.checkpoint({ job: 7, resource: id });
    if (args.fail === 'after-checkpoint') throw new ProviderError('mapped', 'failed after noting the job');
    if (args.fail === 'dangling')
      throw new ProviderError('mapped', 'the workflow failed half-way', {
        dangling: [{ name: 'left-1', providerId: 'left-1', data: { made: 'by the workflow' } }],
      });
    return { hostname: `${id}.test`, providerId: id, connection: { kind: 'provider' }, data: { zone: ctx.instanceSettings.zone, ...(claim ? { claim } : {}) } };
  },
  async release(record) {
    released.push(structuredClone(record));
    resources.delete(record.providerId ?? `r-${record.id}`);
  },
  async discover() {
    return [...resources].map(([id, tags]) => ({
      id: tags[TAGS.id],
      brokerId: tags[TAGS.broker],
      createdAt: tags.created,
      leaseExpires: tags[TAGS.lease],
      hostname: `${id}.test`,
      name: id,
      providerId: id,
      connection: { kind: 'provider' as const },
    }));
  },
  async describe(ctx) {
    return { holders: Object.fromEntries([...(await ctx.holders())].map(([resource, r]) => [resource, r.id])) };
  },
  actions: {
    async echo(args) {
      actionCalls.push(args);
      return args;
    },
  },
});

let dir: string;
let broker: Broker;
const make = (settings: Record<string, unknown> = {}) => new Broker({ directory: dir, providers: [definition], settings: { logLevel: 'silent', ...settings } });
const one = (args: z.input<typeof Args> & { lease?: number } = {}): Promise<Host> =>
  broker.checkout({ provider: 'mapped', waitForSsh: false, ...args } as never) as unknown as Promise<Host>;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hb-contract-'));
  resources = new Map();
  released = [];
  seenSettings = [];
  actionCalls = [];
  broker = make();
});
afterEach(async () => {
  await broker.close();
  await rm(dir, { recursive: true, force: true });
});

describe('instance settings', () => {
  it('are parsed once by the Broker, defaults applied, and handed to the provider typed', async () => {
    broker = make({ mapped: { instances: { east: { zone: 'east-1', default: true } } } });
    const host = await one();
    expect(seenSettings).toEqual([{ zone: 'east-1', limit: 10, reapGrace: 0 }]);
    expect(host.record.data.zone).toBe('east-1');
  });

  it('a bad value fails before anything is made, with one error naming <provider>.instances.<name>.<key>', async () => {
    broker = make({ mapped: { instances: { east: { limit: 0 } } } });
    const error = await rejection(broker.checkout({ provider: 'mapped', instance: 'east' } as never));
    expect(error).toBeInstanceOf(SettingsError);
    expect(error.message).toContain('mapped.instances.east.limit');
    expect(resources.size).toBe(0);
    expect(await broker.inventory()).toEqual([]);
  });
});

describe('ctx.checkpoint', () => {
  it('notes facts on the record at once; they stay on the ready record beside what checkout returned', async () => {
    const host = await one();
    expect(host.record.data).toMatchObject({ job: 7, resource: `r-${host.id}`, zone: 'z1' });
    expect((await broker.inventory())[0]!.data).toMatchObject({ job: 7, zone: 'z1' });
  });

  it('reach release when the checkout fails afterwards, and the record goes once released', async () => {
    const error = await rejection(one({ fail: 'after-checkpoint' }));
    expect(error.message).toContain('failed after noting the job');
    expect(released).toHaveLength(1);
    expect(released[0]!.data).toMatchObject({ job: 7, resource: `r-${released[0]!.id}` });
    expect(resources.size).toBe(0);
    expect(await broker.inventory()).toEqual([]);
  });
});

describe('ctx.reserve', () => {
  it('gives each resource of the pool to one host at a time, across concurrent checkouts, until checkin', async () => {
    const outcomes = await Promise.allSettled([0, 1, 2].map(() => one({ pool: ['a', 'b'] })));
    const hosts = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    expect(hosts.map((h) => h.record.data.claim).sort()).toEqual(['a', 'b']);
    const refused = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect((refused.reason as ProviderError).retryable).toBe(true);
    // Holders are visible to the provider's help and actions.
    expect(await broker.describeProvider('mapped')).toEqual({ holders: Object.fromEntries(hosts.map((h) => [h.record.data.claim, h.id])) });
    await broker.checkin(hosts[0]!);
    const again = await one({ pool: ['a', 'b'] });
    expect(again.record.data.claim).toBe(hosts[0]!.record.data.claim);
  });
});

describe('ProviderError.dangling', () => {
  it('records the hosts a failed checkout left behind as kept, releases the failed one, and checks the kept in later', async () => {
    const error = await rejection<ProviderError>(one({ fail: 'dangling' }));
    expect(error.dangling.map((d) => d.name)).toEqual(['left-1']);
    const records = await broker.inventory();
    expect(records.map((r) => [r.name, r.providerId, r.state])).toEqual([['left-1', 'left-1', 'ready']]);
    expect(records[0]!.kept?.reason).toContain('the workflow failed half-way');
    expect(records[0]!.data).toMatchObject({ made: 'by the workflow', deployFailed: true });
    resources.set('left-1', {});
    await broker.checkin({ all: true });
    expect(released.map((r) => r.providerId)).toContain('left-1');
    expect(await broker.inventory()).toEqual([]);
  });
});

describe('actions', () => {
  it('are dispatched to the implementation with their parsed arguments (defaults applied)', async () => {
    expect(await broker.execute({ provider: 'mapped', action: 'echo', text: 'hi' })).toEqual({ text: 'hi', times: 1 });
    expect(actionCalls).toEqual([{ text: 'hi', times: 1 }]);
  });

  it('with bad arguments are refused by the Broker, naming the key, without calling the provider', async () => {
    const error = await rejection(broker.execute({ provider: 'mapped', action: 'echo', text: 3 }));
    expect(BrokerError.isInstance(error) && error.code).toBe('USER_INPUT');
    expect(error.message).toContain('text');
    expect(actionCalls).toEqual([]);
  });
});

describe('reap', () => {
  it('releases what inventory() reports without a record, and what is past its lease, and keeps the rest', async () => {
    const kept = await one();
    const lost = await one();
    const expired = await one({ lease: 1 });
    while (Date.now() <= Date.parse(expired.record.leaseExpires!)) await new Promise((r) => setTimeout(r, 2));
    resources.set('untagged', {});
    await broker.forget(lost.id);
    const { removed } = await broker.reap('mapped');
    expect(removed.sort()).toEqual([`r-${lost.id}`, `r-${expired.id}`].sort());
    expect([...resources.keys()].sort()).toEqual([`r-${kept.id}`, 'untagged'].sort());
    // The expired host was checked in (its record is gone); the lost one was released by what inventory() said.
    expect((await broker.inventory()).map((r) => r.id)).toEqual([kept.id]);
    expect(released.find((r) => r.id === lost.id)).toMatchObject({ providerId: `r-${lost.id}`, state: 'releasing' });
  });

  it('leaves resources of unknown records younger than the instance’s reapGrace alone', async () => {
    broker = make({ mapped: { reapGrace: '10m' } });
    const host = await one();
    await broker.forget(host.id);
    expect((await broker.reap('mapped')).removed).toEqual([]);
    expect(resources.has(`r-${host.id}`)).toBe(true);
  });
});
