/**
 * Durations in settings and options: milliseconds, or `90s`, `30m`, `4h`, `2d`.
 * @module
 */
import { lazySchema, z } from './zod.js';
import { SettingsError } from './errors.js';

/** A duration: milliseconds, or a string like `90s`, `30m`, `4h`, `2d`. */
export const Duration = lazySchema(() =>
  z.union([z.number().nonnegative(), z.string().regex(/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/, 'use a number of ms or e.g. 90s, 30m, 4h, 2d')]),
);
export type Duration = z.input<typeof Duration>;

/** Milliseconds of a {@link Duration}. */
export function toMs(value: Duration): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(value);
  if (!m) throw new SettingsError(`duration ${JSON.stringify(value)} is not valid: use a number of ms or e.g. 90s, 30m, 4h, 2d.`);
  const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Math.round(Number(m[1]) * unit);
}
