/**
 * Value parsers for CLI options: a bad value fails with a message naming the option and why.
 * @module
 */
import { InvalidArgumentError } from 'commander';

/** A whole number of at least 1. */
export function positiveInt(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError(`expected a whole number of at least 1, got ${JSON.stringify(value)}.`);
  return Number(value);
}

/** A duration such as 90s, 30m, 4h, 2d (or milliseconds). */
export function duration(value: string): string | number {
  if (/^\d+$/.test(value)) return Number(value);
  if (!/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/.test(value))
    throw new InvalidArgumentError(`expected a duration such as 90s, 30m, 4h or 2d, got ${JSON.stringify(value)}.`);
  return value;
}

/** Collects a repeatable option into a list. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
