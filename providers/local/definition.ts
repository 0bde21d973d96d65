/**
 * The `local` provider: each host is a fresh home directory on this machine, reached over a real
 * SSH connection to an SSH server hostbroker runs for it on 127.0.0.1. Needs nothing but Node.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { defineProvider, type ImplementationFor } from '../../lib/provider.js';
import { HostName } from '../../lib/records.js';

export const LocalArgs = lazySchema(() =>
  z.strictObject({
    /** Name of the host; a random one when omitted. */
    name: HostName.optional().describe('host name (random when omitted)'),
    /** Files to create in the new home directory, path → content. */
    files: z.record(z.string(), z.string()).optional().describe('files to create in the home directory: relative path → content'),
  }),
);
export type LocalArgs = z.output<typeof LocalArgs>;

export const LocalInstance = lazySchema(() =>
  z.strictObject({
    /** Where host home directories are made; default `<broker directory>/local-hosts`. */
    root: z.string().optional(),
    /** Address the SSH servers listen on. */
    listen: z.string().default('127.0.0.1'),
  }),
);
export type LocalInstance = z.output<typeof LocalInstance>;

export const local = defineProvider({
  name: 'local',
  description: 'A fresh home directory on this machine behind its own SSH server on 127.0.0.1 (no engine or cloud needed).',
  needsSettings: false,
  args: LocalArgs,
  instance: LocalInstance,
  load: async (): Promise<ImplementationFor<typeof LocalArgs, typeof LocalInstance>> => (await import('./provider.js')).default,
});
