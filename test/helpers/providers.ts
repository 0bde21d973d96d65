/**
 * Small providers for tests, registered with `new Broker({ providers: [...] })`.
 */
import { z } from 'zod';
import { ProviderError } from '../../lib/errors.js';
import { defineProvider, type ProviderImplementation } from '../../lib/provider.js';
import type { Sshd } from './sshd.js';

/** A provider whose hosts are one real sshd; `failAt` makes chosen checkouts fail. */
export function sshdProvider(sshd: Sshd, behaviour: { failAt?: number[]; failRelease?: Set<string>; released?: string[] } = {}) {
  const impl: ProviderImplementation<{ tag?: string }> = {
    async checkout(_args, { record, index }) {
      if (behaviour.failAt?.includes(index)) throw new ProviderError('sshd', `host #${index} failed on purpose`);
      return {
        hostname: sshd.host,
        providerId: record.id,
        connection: { kind: 'ssh', host: sshd.host, port: sshd.port, username: sshd.username, privateKeyPath: sshd.privateKeyPath },
      };
    },
    async release(record) {
      if (behaviour.failRelease?.has(record.name)) throw new ProviderError('sshd', `release of ${record.name} refused on purpose`);
      behaviour.released?.push(record.id);
    },
  };
  return defineProvider({
    name: 'sshd',
    description: 'test: hosts that are one real OpenSSH sshd',
    args: z.strictObject({ tag: z.string().optional(), name: z.string().optional() }),
    load: async () => impl as ProviderImplementation,
  });
}

declare module '../../lib/registry.js' {
  interface ProviderArgs {
    sshd: { tag?: string; name?: string };
  }
}
