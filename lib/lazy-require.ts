/**
 * Packages loaded on first use, synchronously, so that `import('hostbroker')` does not pay for
 * them (yaml alone costs about half of what ssh2 does). Only for packages with a CommonJS entry.
 * @module
 */
import { createRequire } from 'node:module';

const load = createRequire(import.meta.url);

/** A getter that loads `name` the first time it is called. */
export function lazyRequire<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= load(name) as T);
}
