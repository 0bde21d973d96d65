/**
 * A tiny provider for the reliability suite: a "host" is a file in a resource folder, so
 * checkout/checkin cycles exercise the Broker and the inventory, not SSH. Registered with
 * `new Broker({ providers: [memoryProvider(folder)] })`.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { defineProvider, type ProviderImplementation } from '../../../lib/provider.js';

export function memoryProvider(folder: string, delayMs = 0) {
  const impl: ProviderImplementation<{ name?: string; note?: string }> = {
    async checkout(_args, { record }) {
      await mkdir(folder, { recursive: true });
      if (delayMs) await new Promise((r) => setTimeout(r, Math.random() * delayMs));
      await writeFile(join(folder, record.id), `${process.pid}\n`);
      return { hostname: `mem-${record.id}`, providerId: record.id, connection: { kind: 'provider' } };
    },
    async release(record) {
      await rm(join(folder, record.id), { force: true });
    },
    // The folder is this broker's: every file is a host tagged with its record id (the Broker reaps).
    async discover(ctx) {
      return (await readdir(folder).catch(() => [] as string[])).map((id) => ({
        id,
        brokerId: ctx.brokerId,
        hostname: `mem-${id}`,
        providerId: id,
        connection: { kind: 'provider' as const },
      }));
    },
  };
  return defineProvider({
    name: 'memory',
    description: 'test: a host is a file in a folder',
    args: z.strictObject({ name: z.string().optional(), note: z.string().optional() }),
    load: async () => impl as ProviderImplementation,
  });
}
