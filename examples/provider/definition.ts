/**
 * An example provider written against hostbroker's public exports only, as a project outside
 * this repository would write it (see docs/providers.md). Its hosts are fresh directories on this
 * machine; commands run in them with /bin/sh. Small, but it keeps the whole contract: tags for
 * sync and reap, idempotent release, leases, an action, and the conformance suite passes.
 *
 * The definition is the light part, loaded eagerly: names, schemas and docs, nothing else.
 */
import { z } from 'zod';
import { defineProvider, type ImplementationFor } from 'hostbroker';

/** Checkout arguments: validated by the Broker before the provider sees them. */
export const WorkdirArgs = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'use letters, digits, ., _ and -')
    .optional()
    .describe('host name (random when omitted)'),
  files: z.record(z.string(), z.string()).optional().describe('files to create in the directory: relative path → content'),
});

/** Settings of one instance (`workdir.instances.<name>` in broker_settings.yaml). */
export const WorkdirInstance = z.strictObject({
  /** Folder the host directories are made in. */
  root: z.string().min(1),
});
export type WorkdirInstance = z.output<typeof WorkdirInstance>;

const actions = {
  list: { description: 'the host directories of this broker under root, with their record ids', schema: z.strictObject({}) },
};

export const workdir = defineProvider({
  name: 'workdir',
  description: 'example: a fresh directory on this machine; commands run there with /bin/sh',
  args: WorkdirArgs,
  instance: WorkdirInstance,
  actions,
  // Spelt out because provider.ts is typed from this definition (implementProvider).
  load: async (): Promise<ImplementationFor<typeof WorkdirArgs, typeof WorkdirInstance, typeof actions>> => (await import('./provider.js')).default,
});

// Typed checkout arguments: `broker.checkout({ provider: 'workdir', files })` checks them.
declare module 'hostbroker' {
  interface ProviderArgs {
    workdir: z.input<typeof WorkdirArgs>;
  }
}
