/**
 * Settings keys every provider that talks HTTP(S) to a lab service shares: the CA to trust and
 * whether to skip verification. Spread {@link httpTlsFields} into an instance schema.
 * @module
 */
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { lazySchema, z } from './zod.js';
import type { TlsOptions } from './http-dispatcher.js';

/** `ca_file` and `insecure`, for a provider's instance schema. */
export const httpTlsFields = lazySchema(() => ({
  /** PEM file with the CA certificate(s) that signed the service's certificate (trusted besides Node's roots). Relative to the broker directory. */
  ca_file: z.string().min(1).optional(),
  /** Skip TLS certificate verification for this service (the traffic stays encrypted). Prefer `ca_file`. */
  insecure: z.boolean().default(false),
}));

/** The transport's TLS options of an instance's settings; `ca_file` resolved (`~/`, broker directory). */
export function tlsOptionsOf(settings: { ca_file?: string | undefined; insecure?: boolean | undefined }, directory: string): TlsOptions {
  const out: TlsOptions = {};
  if (settings.ca_file) out.caFile = resolvePath(settings.ca_file, directory);
  if (settings.insecure) out.insecure = true;
  return out;
}

function resolvePath(path: string, directory: string): string {
  if (path === '~' || path.startsWith('~/')) return join(homedir(), path.slice(1));
  return isAbsolute(path) ? path : join(directory, path);
}
