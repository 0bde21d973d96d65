/**
 * Bounded concurrency and deadlines.
 * @module
 */
import { TimeoutError } from './errors.js';

/** Runs `fn` over `items` with at most `limit` at once; returns settled results in order. */
export async function mapSettled<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: 'fulfilled', value: await fn(items[i]!, i) };
      } catch (reason) {
        results[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  return results;
}

/** Rejects with a TimeoutError after `ms`, aborting `controller`; the work's own promise is returned settled in `work`. */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string, controller?: AbortController): Promise<T> {
  if (!Number.isFinite(ms) || ms <= 0) return work;
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new TimeoutError(`${what} did not finish within ${Math.round(ms / 1000)} s; raise \`timeout\` if it needs longer.`, ms);
      controller?.abort(error);
      reject(error);
    }, ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
