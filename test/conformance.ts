/**
 * The provider conformance suite: the same behavioural tests for every provider. A provider's
 * test file calls {@link providerConformance} with its own setup; the provider is done when the
 * suite passes. See docs/providers.md.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker, type BrokerOptions, type CheckoutRequest } from '../lib/broker/index.js';
import { BrokerError } from '../lib/errors.js';
import type { ProviderDefinition, ProviderImplementation } from '../lib/provider.js';
import type { HostRecord } from '../lib/records.js';

export interface ConformanceOptions {
  /** Provider name as registered. */
  provider: string;
  /** Makes a Broker for the provider (its directory, settings). `providers` must be passed through to `new Broker`. */
  broker: (extra: Pick<BrokerOptions, 'providers'>) => Promise<Broker> | Broker;
  /** Checkout arguments besides `provider`. */
  args?: Record<string, unknown>;
  /** Asks the provider's own system whether the resource of a record still exists. */
  exists: (record: HostRecord) => Promise<boolean>;
  /** How many hosts the multi-host checkout makes (default 3). */
  count?: number;
  /** Whether hosts can run commands (default true). */
  session?: boolean;
  /** Whether the provider can list its hosts (`sync`); default true. */
  sync?: boolean;
  /** A reason to skip everything (component missing on this machine). Never honoured with CI=true. */
  skip?: string | false;
}

/** Wraps a definition so that its release fails while `failing.on` is true. */
function failingRelease(definition: ProviderDefinition, failing: { on: boolean }): ProviderDefinition {
  return {
    ...definition,
    load: async () => {
      const impl = (await definition.load()) as ProviderImplementation;
      return {
        ...impl,
        release: async (record, ctx) => {
          if (failing.on) throw new Error('release refused on purpose by the conformance suite');
          return impl.release(record, ctx);
        },
      } as ProviderImplementation;
    },
  };
}

/** Registers the conformance tests for one provider. */
export function providerConformance(options: ConformanceOptions): void {
  const skip = options.skip && process.env.CI !== 'true' ? options.skip : false;
  if (options.skip && process.env.CI === 'true') {
    it(`${options.provider}: its real component is available in CI`, () => {
      throw new Error(`conformance of ${options.provider} cannot run in CI: ${options.skip}`);
    });
    return;
  }
  describe.skipIf(Boolean(skip))(`provider conformance: ${options.provider}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const failing = { on: false };
    let broker: Broker;
    const one = () => ({ provider: options.provider, ...options.args }) as unknown as CheckoutRequest & { count?: undefined };
    const many = (count: number) => ({ provider: options.provider, ...options.args, count }) as unknown as CheckoutRequest & { count: number };

    beforeAll(async () => {
      const plain = await options.broker({});
      const wrapped = failingRelease(plain.definition(options.provider), failing);
      await plain.close();
      broker = await options.broker({ providers: [wrapped] });
    });
    afterAll(async () => {
      failing.on = false;
      await broker?.checkin({ all: true, filter: `provider=${options.provider}` }).catch(() => undefined);
      await broker?.close();
    });

    it('checks out one host, records it as ready, and checks it in so the provider no longer has it', async () => {
      const host = await broker.checkout(one());
      const record = (await broker.inventory({ filter: `id=${host.id}` }))[0];
      expect(record?.state).toBe('ready');
      expect(record?.hostname).not.toBe('');
      expect(await options.exists(record!)).toBe(true);
      if (options.session !== false) {
        const r = await host.execute('echo conformance-$((40+2))');
        expect(r).toMatchObject({ status: 0, stdout: 'conformance-42\n' });
      }
      await broker.checkin(host);
      expect(await broker.inventory({ filter: `id=${host.id}` })).toHaveLength(0);
      expect(await options.exists(record!)).toBe(false);
    });

    it('checks out N hosts concurrently as a group of distinct hosts', async () => {
      const n = options.count ?? 3;
      await using group = await broker.checkout(many(n));
      expect(group).toHaveLength(n);
      expect(new Set(group.map((h) => h.id)).size).toBe(n);
      const records = await broker.inventory({ filter: `provider=${options.provider}` });
      for (const h of group) expect(records.find((r) => r.id === h.id)?.state).toBe('ready');
      if (options.session !== false) {
        const results = await group.execute('echo $((6*7))');
        expect(results.map((r) => r.stdout)).toEqual(Array(n).fill('42\n'));
      }
    });

    it.skipIf(options.session === false)('round-trips binary files, including empty ones', async () => {
      await using host = await broker.checkout(one());
      const data = randomBytes(256 * 1024 + 7);
      await host.session.write(data, 'conformance/bin.dat');
      expect(Buffer.compare(await host.session.read('conformance/bin.dat'), data)).toBe(0);
      await host.session.write(Buffer.alloc(0), 'conformance/empty');
      expect((await host.session.read('conformance/empty')).length).toBe(0);
    });

    it.skipIf(options.sync === false)('sync finds a host that is missing from the inventory (made elsewhere)', async () => {
      await using host = await broker.checkout(one());
      // As if another machine had checked it out: this inventory does not know it.
      await broker.inventoryFile.remove(host.id);
      expect(await broker.inventory({ filter: `id=${host.id}` })).toHaveLength(0);
      const result = await broker.sync(options.provider);
      expect(result.added.map((r) => r.id)).toContain(host.id);
      const found = await broker.inventory({ filter: `id=${host.id}` });
      expect(found[0]?.hostname).toBe(host.hostname);
    });

    it('keeps the record when a release fails, and releases on the next checkin', async () => {
      const host = await broker.checkout(one());
      failing.on = true;
      const error = await broker.checkin(host.record).catch((e: unknown) => e);
      expect(BrokerError.isInstance(error)).toBe(true);
      expect(String((error as Error).message)).toContain('release refused on purpose');
      const kept = await broker.inventory({ filter: `id=${host.id}` });
      expect(kept).toHaveLength(1);
      expect(kept[0]?.lastError).toContain('release refused');
      expect(await options.exists(kept[0]!)).toBe(true);
      failing.on = false;
      await broker.checkin(host.id);
      expect(await broker.inventory({ filter: `id=${host.id}` })).toHaveLength(0);
      expect(await options.exists(kept[0]!)).toBe(false);
      await host.disconnect();
    });
  });
}
