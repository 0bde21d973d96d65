/**
 * The conformance suite's instruments: its wrapped provider (releases that fail on purpose,
 * counted action calls) and the bad arguments an action must refuse.
 * @module
 */
import { z } from '../zod.js';
import type { AnyProviderDefinition, ProviderImplementation } from '../provider.js';

/** Switches the suite turns on in its wrapped provider. */
export interface Faults {
  failRelease: boolean;
  actionCalls: number;
}

/** The definition with a release that fails while `faults.failRelease`, and action calls counted. */
export function instrumented(definition: AnyProviderDefinition, faults: Faults): AnyProviderDefinition {
  return {
    ...definition,
    load: async () => {
      const impl = (await definition.load()) as ProviderImplementation;
      const actions =
        impl.actions &&
        Object.fromEntries(
          Object.entries(impl.actions).map(([name, run]) => [
            name,
            (args: unknown, ctx: Parameters<typeof run>[1]) => {
              faults.actionCalls++;
              return run(args, ctx);
            },
          ]),
        );
      return {
        ...impl,
        ...(actions ? { actions } : {}),
        release: async (record, ctx) => {
          if (faults.failRelease) throw new Error('release refused on purpose by the conformance suite');
          return impl.release(record, ctx);
        },
      } satisfies ProviderImplementation;
    },
  };
}

/** Arguments an action's schema must refuse: an unknown key, or a value of no type for one of its keys. */
export function badArgsFor(schema: z.ZodType): Record<string, unknown> | undefined {
  const candidates: Record<string, unknown>[] = [{ conformanceUnknownArgument: true }];
  if (schema instanceof z.ZodObject) for (const key of Object.keys(schema.shape)) candidates.push({ [key]: Symbol('not a value') });
  return candidates.find((c) => !schema.safeParse(c).success);
}
