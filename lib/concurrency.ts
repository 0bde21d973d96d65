/**
 * Bounded concurrency and deadlines.
 * @module
 */
import { AbortedError, type FailureEntry, PartialFailureError, TimeoutError, UserInputError, asError } from './errors.js';

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

/** Settled results split into what succeeded (with their items) and what failed, named. */
export interface Outcomes<T, R> {
  values: R[];
  succeeded: T[];
  failures: FailureEntry[];
}

/** Splits settled results of `items`; `name` says which item a failure was about. */
export function outcomes<T, R>(items: readonly T[], settled: readonly PromiseSettledResult<R>[], name: (item: T, index: number) => string): Outcomes<T, R> {
  const out: Outcomes<T, R> = { values: [], succeeded: [], failures: [] };
  settled.forEach((s, i) => {
    if (s.status === 'fulfilled') {
      out.values.push(s.value);
      out.succeeded.push(items[i]!);
    } else out.failures.push({ target: name(items[i]!, i), error: asError(s.reason) });
  });
  return out;
}

/**
 * Throws for failures of a many-item operation: a lone item's error as it is, else a
 * PartialFailureError with `summary` and what succeeded. Nothing when there were none.
 */
export function throwFailures(failures: readonly FailureEntry[], total: number, summary: string, succeeded: readonly unknown[] = []): void {
  if (!failures.length) return;
  if (failures.length === 1 && total === 1) throw failures[0]!.error;
  throw new PartialFailureError(summary, [...failures], [...succeeded]);
}

/** Runs `fn` over `items` (at most `limit` at once) and throws as {@link throwFailures} does. */
export async function mapAll<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
  name: (item: T, index: number) => string,
  summary: (failed: number, total: number) => string,
): Promise<R[]> {
  const o = outcomes(items, await mapSettled(items, limit, fn), name);
  throwFailures(o.failures, items.length, summary(o.failures.length, items.length), o.succeeded);
  return o.values;
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

/**
 * Settles as `work` does, or rejects with `aborted()` as soon as `signal` aborts (the work itself
 * goes on; stop it through the signal). Without a signal it is `work`.
 */
export function withAbort<T>(work: Promise<T>, signal: AbortSignal | undefined, aborted: () => Error): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) {
    work.catch(() => undefined); // nobody waits for it any more
    return Promise.reject(aborted());
  }
  let onAbort = (): void => undefined;
  const stopped = new Promise<never>((_, reject) => {
    onAbort = () => reject(aborted());
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([work, stopped]).finally(() => signal.removeEventListener('abort', onAbort));
}

/** The `signal` option of an operation, checked: undefined or an AbortSignal. */
export function signalOption(signal: unknown): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw new UserInputError('`signal` must be an AbortSignal (e.g. `new AbortController().signal`).');
  return signal;
}

/** Why a signal was aborted, for messages: ` (its reason)`, or nothing for the generic default. */
export function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  if (r === undefined || (r instanceof Error && r.name === 'AbortError')) return '';
  return ` (${r instanceof Error ? r.message : String(r)})`;
}

/** The error of an operation (`what`) whose signal was aborted before it created anything. */
export function abortedBeforeStart(what: string, signal: AbortSignal): AbortedError {
  return new AbortedError(`${what} was aborted before it started${abortReason(signal)}; nothing was created.`, { reason: signal.reason });
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
