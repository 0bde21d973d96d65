/**
 * Bad input, generated with fast-check: settings files, filter strings, checkout arguments and
 * args files. Whatever comes in, only BrokerErrors come out (never a TypeError or a crash), and
 * the inventory is never left half-written: after a refused checkout it is exactly as before.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { Broker, type CheckoutRequest } from '../../lib/broker/index.js';
import { BrokerError } from '../../lib/errors.js';
import { InventoryFile } from '../../lib/records.js';
import { memoryProvider } from './children/memory-provider.js';
import { reportFigures, tempBrokerDir } from './util.js';

const RUNS = Number(process.env.HB_FUZZ_RUNS ?? 200);
const counts = { inputs: 0, accepted: 0, refused: 0 };
const dir = await tempBrokerDir('hb-fuzz-');
const resources = join(dir, 'resources');
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  reportFigures('bad-input', counts);
});

/** Runs `fn`; an error must be a BrokerError. Counts what happened. */
async function onlyBrokerErrors(fn: () => Promise<unknown>): Promise<boolean> {
  counts.inputs++;
  try {
    await fn();
    counts.accepted++;
    return true;
  } catch (error) {
    if (!BrokerError.isInstance(error)) throw new Error(`a non-BrokerError came out: ${String(error)}`, { cause: error });
    expect((error as Error).message.length).toBeGreaterThan(10);
    counts.refused++;
    return false;
  }
}

const broker = new Broker({ directory: dir, providers: [memoryProvider(resources)], settings: { logLevel: 'silent' } });

/** Any JSON-ish value, including the shapes settings and arguments have. */
const anything = fc.oneof(
  fc.anything({ maxDepth: 3, withNullPrototype: false }),
  fc.dictionary(
    fc.constantFrom('logLevel', 'ssh', 'checkout', 'nicks', 'bundles', 'providers', 'owner', 'local', 'memory', 'container', 'x'),
    fc.jsonValue({ maxDepth: 3 }),
  ),
  fc.record({
    checkout: fc.dictionary(fc.constantFrom('concurrency', 'timeout', 'lease', 'onPartialFailure', 'keepOnFailure', 'bundles'), fc.jsonValue({ maxDepth: 2 })),
  }),
  fc.record({ ssh: fc.dictionary(fc.constantFrom('port', 'connectTimeout', 'keepaliveInterval', 'hostKeyPolicy', 'username'), fc.jsonValue({ maxDepth: 1 })) }),
);

describe('generated bad input', () => {
  it('settings files: a Broker is made or a SettingsError says why', { timeout: 120_000 }, async () => {
    const sdir = await tempBrokerDir('hb-fuzz-settings-');
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.string({ maxLength: 200 }),
            anything.map((v) => stringify(v) ?? ''),
          ),
          async (text) => {
            await writeFile(join(sdir, 'broker_settings.yaml'), text);
            await onlyBrokerErrors(async () => new Broker({ directory: sdir, providers: [memoryProvider(resources)] }));
          },
        ),
        { numRuns: RUNS },
      );
    } finally {
      await rm(sdir, { recursive: true, force: true });
    }
  });

  it('filter strings: records or a UserInputError', { timeout: 120_000 }, async () => {
    await broker.checkout({ provider: 'memory', count: 2 } as unknown as CheckoutRequest & { count: number });
    const filterText = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc
        .array(
          fc.tuple(
            fc.constantFrom('name', 'state', 'recipe.args', 'data.x', 'provider', '', '!', 'a b'),
            fc.constantFrom('<', '=', '{', '}', '!<', '!=', '', '!!'),
            fc.string({ maxLength: 10 }),
          ),
          { maxLength: 4 },
        )
        .map((parts) => parts.map((p) => p.join('')).join(',')),
    );
    await fc.assert(
      fc.asyncProperty(filterText, async (filter) => {
        await onlyBrokerErrors(() => broker.inventory({ filter }));
      }),
      { numRuns: RUNS },
    );
    await broker.checkin({ all: true });
  });

  it('checkout arguments: a host (checked in again) or a BrokerError, and the inventory untouched by refusals', { timeout: 180_000 }, async () => {
    const request = fc.oneof(
      anything,
      fc.record(
        {
          provider: fc.constantFrom('memory', 'nope', '', 'local'),
          count: fc.oneof(fc.integer({ min: -2, max: 3 }), fc.double(), fc.string()),
          note: fc.anything({ maxDepth: 1 }),
        },
        { requiredKeys: ['provider'] },
      ),
      fc.record({
        nick: fc.oneof(fc.string(), fc.integer()),
        lease: fc.oneof(fc.string({ maxLength: 6 }), fc.integer()),
        timeout: fc.oneof(fc.string({ maxLength: 6 }), fc.integer({ min: -5, max: 5 })),
      }),
      fc.record({
        provider: fc.constant('memory'),
        name: fc.string({ maxLength: 8 }),
        onPartialFailure: fc.string({ maxLength: 6 }),
        concurrency: fc.integer({ min: -1, max: 3 }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(request, async (req) => {
        const before = await readFile(join(dir, 'inventory.json'), 'utf8').catch(() => '');
        let made: unknown;
        const ok = await onlyBrokerErrors(async () => {
          made = await broker.checkout(req as CheckoutRequest);
        });
        if (ok) {
          await broker.checkin(Symbol.iterator in (made as object) ? [...(made as Iterable<never>)] : (made as never));
        } else {
          const after = await readFile(join(dir, 'inventory.json'), 'utf8').catch(() => '');
          if (after !== before) {
            // Only a real attempt (which released what it made) may have touched the file.
            expect(InventoryFile.parse(JSON.parse(after)).hosts).toEqual(before ? InventoryFile.parse(JSON.parse(before)).hosts : []);
          }
        }
      }),
      { numRuns: RUNS },
    );
    expect(await broker.inventory()).toEqual([]);
  });

  it('args files: read as arguments or a UserInputError naming the file', { timeout: 120_000 }, async () => {
    const argsFile = join(dir, 'args.yaml');
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 120 }),
          anything.map((v) => stringify(v) ?? ''),
          anything.map((v) => JSON.stringify(v) ?? 'null'),
        ),
        async (text) => {
          await writeFile(argsFile, text);
          let made: unknown;
          const ok = await onlyBrokerErrors(async () => {
            made = await broker.checkout({ provider: 'memory', argsFile } as unknown as CheckoutRequest & { count?: undefined });
          });
          if (ok) await broker.checkin(made as never);
        },
      ),
      { numRuns: RUNS },
    );
    await onlyBrokerErrors(() => broker.checkout({ provider: 'memory', argsFile: join(dir, 'missing.yaml') } as unknown as CheckoutRequest));
    expect(await broker.inventory()).toEqual([]);
    expect(InventoryFile.safeParse(JSON.parse(await readFile(join(dir, 'inventory.json'), 'utf8'))).success).toBe(true);
  });
});
