/**
 * Published samples of the real services (test/fidelity/samples/, each with its source file and
 * version) and a check that a fake's answer has the sample's shape.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';

const DIR = join(import.meta.dirname, 'samples');

/** A JSON sample: `{ source, sample }`. */
export function sample<T = unknown>(name: string): T {
  return (JSON.parse(readFileSync(join(DIR, name), 'utf8')) as { sample: T }).sample;
}

/** A text sample (XML) as stored; its first comment names its source. */
export function textSample(name: string): string {
  return readFileSync(join(DIR, name), 'utf8');
}

function kind(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

/** Fields whose keys are data (metadata, addresses by network): only their values' shape is compared. */
const MAPS = new Set(['metadata', 'addresses', 'artifacts']);

/**
 * Every field of `real` is in `fake` with the same JSON type (recursing into objects and the first
 * item of arrays). `null` on either side matches anything: the services send null for unset fields.
 */
export function expectSameShape(fake: unknown, real: unknown, path = '$'): void {
  if (real === null || fake === null) return;
  expect(kind(fake), `${path}: the fake sends ${kind(fake)}, the service ${kind(real)}`).toBe(kind(real));
  if (Array.isArray(real) && Array.isArray(fake)) {
    if (real.length && fake.length) expectSameShape(fake[0], real[0], `${path}[0]`);
    return;
  }
  if (kind(real) !== 'object') return;
  const f = fake as Record<string, unknown>;
  if (MAPS.has(path.split('.').at(-1)!)) {
    const [r, x] = [Object.values(real as object)[0], Object.values(f)[0]];
    if (r !== undefined && x !== undefined) expectSameShape(x, r, `${path}.*`);
    return;
  }
  for (const [key, value] of Object.entries(real as Record<string, unknown>)) {
    expect(Object.hasOwn(f, key), `${path}.${key}: the service sends it, the fake does not`).toBe(true);
    expectSameShape(f[key], value, `${path}.${key}`);
  }
}
