/**
 * zod, loaded on first use: zod alone costs more to import than ssh2, so `import('hostbroker')`
 * must not load it or build a schema. Modules import `z` from here (same calls and types as zod's
 * `z`) and wrap module-level schemas in {@link lazySchema}. One zod copy for all of hostbroker: its
 * CommonJS build, loaded synchronously, since `parseSettings` and the like are sync. Schemas of
 * another zod copy (a provider author's) mix with these: zod's `instanceof` checks its traits.
 * @module
 */
import type { z as Zod } from 'zod';
import { lazyRequire } from './lazy-require.js';

const load = lazyRequire<{ z: typeof Zod }>('zod');

/** A stand-in for the object `build` returns, built on first touch (any property, `instanceof`, keys). */
function deferred<T extends object>(build: () => T): T {
  let real: T | undefined;
  const get = (): T => (real ??= build());
  return new Proxy({} as T, {
    get: (_, key) => Reflect.get(get(), key),
    set: (_, key, value) => Reflect.set(get(), key, value),
    has: (_, key) => Reflect.has(get(), key),
    ownKeys: () => Reflect.ownKeys(get()),
    getPrototypeOf: () => Reflect.getPrototypeOf(get()),
    defineProperty: (_, key, descriptor) => Reflect.defineProperty(get(), key, descriptor),
    deleteProperty: (_, key) => Reflect.deleteProperty(get(), key),
    getOwnPropertyDescriptor: (target, key) => {
      const descriptor = Reflect.getOwnPropertyDescriptor(get(), key);
      // A proxy may report a non-configurable property only if its target has it too.
      if (descriptor && !descriptor.configurable) Reflect.defineProperty(target, key, descriptor);
      return descriptor;
    },
  });
}

/** zod's `z`, loaded the first time one of its members is used. */
export const z: typeof Zod = deferred(() => load().z);

/** The zod types hostbroker's modules name through `z` (a namespace of types only). */
export declare namespace z {
  export type output<T> = Zod.output<T>;
  export type input<T> = Zod.input<T>;
  export type infer<T> = Zod.infer<T>;
  export type ZodType<Output = unknown, Input = unknown> = Zod.ZodType<Output, Input>;
  export type ZodError<T = unknown> = Zod.ZodError<T>;
}

/**
 * A module-level schema built when first used: `export const Args = lazySchema(() => z.object({ … }))`
 * has the type, calls and `instanceof` of the schema itself.
 */
export function lazySchema<T extends object>(build: () => T): T {
  return deferred(build);
}
