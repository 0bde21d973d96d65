/**
 * The provider conformance suite: the behaviour every provider owes the Broker, ours or yours. A
 * provider's test file calls {@link providerConformance} with a way to make a Broker and a way to
 * ask the provider's own system whether a host's resource exists; the provider is done when the
 * suite passes. Needs vitest (it registers vitest tests). See docs/providers.md.
 * @module hostbroker/testing
 */
import { randomBytes } from 'node:crypto';
import { getEventListeners } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import type { Broker, BrokerOptions, CheckoutRequest } from '../broker/index.js';
import { reapable } from '../broker/reap-rule.js';
import { BrokerError } from '../errors.js';
import type { AnyProviderDefinition, ProviderImplementation } from '../provider.js';
import type { HostRecord } from '../records.js';
import { CHECKOUT_OPTION_KEYS } from '../requests.js';
import { intentRecord, readyRecord, testContext, testHostContext, type TestContext } from './context.js';
import { badArgsFor, type Faults, instrumented } from './instruments.js';

/** What {@link providerConformance} needs to know about a provider. */
export interface ConformanceOptions {
  /** The provider's definition (the suite wraps it to make releases fail on purpose). */
  definition: AnyProviderDefinition;
  /** Makes a Broker for the provider (its directory, settings); pass `providers` through to `new Broker`. */
  broker: (extra: Required<Pick<BrokerOptions, 'providers'>>) => Promise<Broker> | Broker;
  /** Checkout arguments besides `provider` (checkout options such as `waitForSsh` may be mixed in). */
  args?: Record<string, unknown>;
  /** Asks the provider's own system whether the resource of a record exists (not the inventory). */
  exists: (record: HostRecord) => Promise<boolean>;
  /** Settings instance to use (default: the default one). */
  instance?: string;
  /** How many hosts the multi-host checkout makes (default 3). */
  count?: number;
  /** Whether hosts can run commands (default true). */
  session?: boolean;
  /** Whether the provider lists its hosts (`discover()`, for sync and reap); default true. */
  sync?: boolean;
  /** Whether `discover()` reports the lease tag (`leaseExpires`) of what it lists; default true. */
  leaseTags?: boolean;
  /**
   * Hosts are claims on a pool of machines that outlive them (`ctx.reserve`, e.g. `static`):
   * releasing frees the claim with the record, so `exists` is asked only through the Broker.
   */
  pool?: boolean;
  /** A reason to skip everything (component missing on this machine). Never honoured with CI=true. */
  skip?: string | false;
}

/** A case for what only some providers have is registered where it applies, not skipped elsewhere. */
const itWhere = (applies: boolean): typeof it => (applies ? it : ((() => undefined) as unknown as typeof it));

/** Registers the conformance tests for one provider. */
export function providerConformance(options: ConformanceOptions): void {
  const provider = options.definition.name;
  if (options.skip && process.env.CI === 'true') {
    it(`${provider}: its real component is available in CI`, () => {
      throw new Error(`conformance of ${provider} cannot run in CI: ${options.skip}`);
    });
    return;
  }
  const skip = options.skip || false;
  const session = options.session !== false;
  const sync = options.sync !== false;
  const leaseTags = options.leaseTags !== false;
  const pool = options.pool === true;
  const checkoutOptions = new Set<string>(CHECKOUT_OPTION_KEYS);
  const providerArgs = Object.fromEntries(Object.entries(options.args ?? {}).filter(([k]) => !checkoutOptions.has(k)));

  describe.skipIf(Boolean(skip))(`provider conformance: ${provider}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const faults: Faults = { failRelease: false, actionCalls: 0 };
    let broker: Broker;
    let impl: ProviderImplementation;
    let t: TestContext;
    const one = (extra: Record<string, unknown> = {}) =>
      ({ provider, ...options.args, ...extra, ...(options.instance ? { instance: options.instance } : {}) }) as unknown as CheckoutRequest & {
        count?: undefined;
      };
    const many = (count: number) =>
      ({ provider, ...options.args, count, ...(options.instance ? { instance: options.instance } : {}) }) as unknown as CheckoutRequest & { count: number };
    const recordOf = async (id: string) => (await broker.inventory({ filter: `id=${id}` }))[0];
    /** Checkout of one host straight through the implementation, as the Broker calls it. */
    const checkoutDirect = async (signal?: AbortSignal) => {
      const args = options.definition.args.parse(providerArgs) as Record<string, unknown>;
      const record = intentRecord(t, { recipe: { provider, instance: t.ctx.instance, args } });
      const ctx = testHostContext(t, record, signal ? { signal } : {});
      return { record, ctx, work: impl.checkout(args, { record, index: 0, count: 1 }, ctx) };
    };

    beforeAll(async () => {
      broker = await options.broker({ providers: [instrumented(options.definition, faults)] });
      impl = (await options.definition.load()) as ProviderImplementation;
      t = await testContext(options.definition, { broker, ...(options.instance ? { instance: options.instance } : {}) });
    });
    afterAll(async () => {
      faults.failRelease = false;
      await broker?.checkin({ all: true, filter: `provider=${provider}` }).catch(() => undefined);
      await broker?.close();
      await t?.cleanup();
    });

    it('checks out one host, records it as ready, and checks it in so the provider no longer has it', async () => {
      const host = await broker.checkout(one());
      const record = await recordOf(host.id);
      expect(record?.state).toBe('ready');
      expect(record?.hostname).not.toBe('');
      expect(await options.exists(record!)).toBe(true);
      if (session) {
        const r = await host.execute('echo conformance-$((40+2))');
        expect(r).toMatchObject({ status: 0, stdout: 'conformance-42\n' });
      }
      await broker.checkin(host);
      expect(await recordOf(host.id)).toBeUndefined();
      expect(await options.exists(record!)).toBe(false);
    });

    it('checks out N hosts concurrently as a group of distinct hosts', async () => {
      const n = options.count ?? 3;
      await using group = await broker.checkout(many(n));
      expect(group).toHaveLength(n);
      expect(new Set(group.map((h) => h.id)).size).toBe(n);
      const records = await broker.inventory({ filter: `provider=${provider}` });
      for (const h of group) expect(records.find((r) => r.id === h.id)?.state).toBe('ready');
      if (session) {
        const results = await group.execute('echo $((6*7))');
        expect(results.map((r) => r.stdout)).toEqual(Array(n).fill('42\n'));
      }
    });

    itWhere(session)('round-trips binary files, including empty ones', async () => {
      await using host = await broker.checkout(one());
      const data = randomBytes(256 * 1024 + 7);
      await host.session.write(data, 'conformance/bin.dat');
      expect(Buffer.compare(await host.session.read('conformance/bin.dat'), data)).toBe(0);
      await host.session.write(Buffer.alloc(0), 'conformance/empty');
      expect((await host.session.read('conformance/empty')).length).toBe(0);
    });

    itWhere(!sync)('without discover(), sync is refused with a UserInputError that says so, and the inventory is left as it was', async () => {
      await using host = await broker.checkout(one());
      expect(impl.discover).toBeUndefined();
      await expect(broker.sync(provider)).rejects.toMatchObject({ code: 'USER_INPUT' });
      expect((await recordOf(host.id))?.state).toBe('ready');
    });

    itWhere(sync)('sync finds a host that is missing from the inventory (made elsewhere)', async () => {
      await using host = await broker.checkout(one());
      await broker.forget(host.id);
      expect(await recordOf(host.id)).toBeUndefined();
      const result = await broker.sync(options.instance ? `${provider}::${options.instance}` : provider);
      expect(result.added.map((r) => r.id)).toContain(host.id);
      expect((await recordOf(host.id))?.hostname).toBe(host.hostname);
    });

    it('keeps the record when a release fails, and releases on the next checkin', async () => {
      const host = await broker.checkout(one());
      faults.failRelease = true;
      const error = await broker.checkin(host.record).catch((e: unknown) => e);
      faults.failRelease = false;
      expect(BrokerError.isInstance(error)).toBe(true);
      expect(String((error as Error).message)).toContain('release refused on purpose');
      const kept = await recordOf(host.id);
      expect(kept?.lastError).toContain('release refused');
      expect(await options.exists(kept!)).toBe(true);
      await broker.checkin(host.id);
      expect(await recordOf(host.id)).toBeUndefined();
      expect(await options.exists(kept!)).toBe(false);
      await host.disconnect();
    });

    it('releases idempotently: twice, and once more (through checkin) after the resource is gone', async () => {
      const host = await broker.checkout(one());
      const record = (await recordOf(host.id))!;
      t.records.set(record.id, structuredClone(record));
      await impl.release(record, testHostContext(t, record));
      await impl.release(record, testHostContext(t, record));
      t.forget(record.id);
      if (!pool) expect(await options.exists(record)).toBe(false);
      await broker.checkin(host);
      expect(await recordOf(host.id)).toBeUndefined();
      expect(await options.exists(record)).toBe(false);
    });

    it('releases a record still in `provisioning` by its id, touching nothing else, and lets go of the signal', async () => {
      const controller = new AbortController();
      const a = await checkoutDirect(controller.signal);
      const b = await checkoutDirect(controller.signal);
      const made = readyRecord(t, a.record, await a.work);
      const other = readyRecord(t, b.record, await b.work);
      // A provider that leaves listeners on the signal leaks one per checkout in a long-lived process.
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
      if (pool) expect([...t.claims.values()]).toEqual(expect.arrayContaining([a.record.id, b.record.id]));
      else expect(await options.exists(made)).toBe(true);
      // As written before checkout (a process killed mid-checkout leaves no more): no providerId, nothing noted.
      await impl.release(a.record, testHostContext(t, a.record));
      await impl.release(a.record, testHostContext(t, a.record));
      t.forget(a.record.id);
      if (!pool) {
        expect(await options.exists(made)).toBe(false);
        expect(await options.exists(other)).toBe(true);
      }
      if (impl.discover) expect((await impl.discover(t.ctx)).map((d) => d.id)).not.toContain(a.record.id);
      await impl.release(other, testHostContext(t, other));
      t.forget(other.id);
      if (!pool) expect(await options.exists(other)).toBe(false);
    });

    it('honours an aborted ctx.signal: checkout rejects, and releasing its record leaves nothing', async () => {
      const controller = new AbortController();
      controller.abort(new Error('aborted by the conformance suite'));
      const { record, work } = await checkoutDirect(controller.signal);
      const outcome = await work.then(
        (host) => ({ host }),
        (error: unknown) => ({ error }),
      );
      await impl.release(t.records.get(record.id) ?? record, testHostContext(t, record));
      t.forget(record.id);
      expect(outcome).toHaveProperty('error');
      expect((outcome as { error: unknown }).error).toBeInstanceOf(Error);
      if (impl.discover) expect((await impl.discover(t.ctx)).map((d) => d.id)).not.toContain(record.id);
    });

    it('extends the lease where the provider has leases (the record and what discover() reports follow), and refuses where it has none', async () => {
      const host = await broker.checkout(one({ lease: '1h' }));
      if (!impl.extend) {
        const before = (await recordOf(host.id))!.leaseExpires;
        await expect(broker.extend(host, { lease: '3h' })).rejects.toMatchObject({ code: 'USER_INPUT' });
        expect((await recordOf(host.id))!.leaseExpires).toBe(before);
        await broker.checkin(host);
        return;
      }
      const hours3 = 3 * 3600_000;
      const from = Date.now();
      await broker.extend(host, { lease: '3h' });
      const to = Date.now();
      const record = (await recordOf(host.id))!;
      expect(Date.parse(record.leaseExpires!)).toBeGreaterThanOrEqual(from + hours3);
      expect(Date.parse(record.leaseExpires!)).toBeLessThanOrEqual(to + hours3);
      if (leaseTags && impl.discover) {
        const found = (await impl.discover(t.ctx)).find((d) => d.id === host.id);
        expect(Date.parse(found?.leaseExpires ?? '')).toBe(Date.parse(record.leaseExpires!));
      }
      await broker.checkin(host);
    });

    itWhere(sync)('discover() reports what the reap rule needs; reap releases what has no record or whose lease passed, and keeps the rest', async () => {
      const keep = await broker.checkout(one(leaseTags ? { lease: '1h' } : {}));
      const lost = await broker.checkout(one(leaseTags ? { lease: '1h' } : {}));
      const expired = leaseTags ? await broker.checkout(one({ lease: 1 })) : undefined;
      const found = await impl.discover!(t.ctx);
      const listed = (host: { id: string }) => {
        const d = found.find((h) => h.id === host.id);
        expect(d, 'discover() lists the host with its record id').toBeDefined();
        expect(d!.brokerId).toBe(broker.brokerId);
        if (d!.createdAt !== undefined) expect(Number.isFinite(Date.parse(d!.createdAt))).toBe(true);
        return d!;
      };
      const d = listed(lost);
      const leaseEnd = Date.parse(lost.record.leaseExpires ?? '');
      if (leaseTags) expect(Date.parse(d.leaseExpires ?? '')).toBe(leaseEnd);
      const rule = (isKnown: (id: string) => boolean, now = Date.now()) =>
        reapable(found, { brokerId: broker.brokerId, isKnown, now, graceMs: 0 })
          .filter((r) => r.host.id === lost.id)
          .map((r) => r.reason);
      expect(rule(() => true)).toEqual([]);
      expect(rule((id) => id !== lost.id)).toEqual(['orphaned']);
      if (leaseTags) expect(rule(() => true, leaseEnd + 1)).toEqual(['expired']);

      // Through the Broker: one record is lost (as after a crash), one lease has passed.
      const gone = expired ? listed(expired) : undefined;
      while (expired && Date.now() <= Date.parse(expired.record.leaseExpires!)) await new Promise((r) => setTimeout(r, 5));
      await broker.forget(lost.id);
      const { removed } = await broker.reap(provider);
      expect(removed).toContain(d.name ?? d.hostname);
      expect(await options.exists(lost.record)).toBe(false);
      if (expired) {
        expect(removed).toContain(gone!.name ?? gone!.hostname);
        expect(await options.exists(expired.record)).toBe(false);
        expect(await recordOf(expired.id)).toBeUndefined();
        await expired.disconnect();
      }
      expect(await options.exists(keep.record)).toBe(true);
      expect(await recordOf(keep.id)).toBeDefined();
      await lost.disconnect();
      await broker.checkin(keep);
    });

    itWhere(Boolean(options.definition.actions))('has a function for every action, and the Broker refuses bad action arguments before calling it', async () => {
      for (const [name, action] of Object.entries<{ schema: z.ZodType }>(options.definition.actions ?? {})) {
        expect(typeof impl.actions?.[name], `implementation of action ${name}`).toBe('function');
        const bad = badArgsFor(action.schema);
        expect(bad, `the schema of action ${name} refuses something`).toBeDefined();
        const calls = faults.actionCalls;
        const error = await broker.execute({ provider, action: name, ...bad }).catch((e: unknown) => e);
        expect(BrokerError.isInstance(error) && error.code).toBe('USER_INPUT');
        expect(faults.actionCalls).toBe(calls);
      }
      const unknown = await broker.execute({ provider, action: 'no-such-action-of-the-conformance-suite' }).catch((e: unknown) => e);
      expect(BrokerError.isInstance(unknown) && unknown.code).toBe('USER_INPUT');
    });
  });
}
