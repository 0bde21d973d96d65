/**
 * Provider packages the user installs (SDKs, engine clients, native bindings): a missing one fails
 * the checkout before any record is written, with the error naming what to install, and
 * `providers()` tells which are installed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Broker } from '../lib/broker/index.js';
import { MissingDependencyError } from '../lib/errors.js';
import { isInstalled } from '../lib/packages.js';
import { defineProvider } from '../lib/provider.js';
import { inventoryOf } from './helpers/inventory.js';

declare module '../lib/registry.js' {
  interface ProviderArgs {
    needy: { size?: number };
  }
}

const MISSING = 'hostbroker-test-package-that-is-not-installed';
let directory: string | undefined;

afterEach(async () => {
  if (directory) await rm(directory, { recursive: true, force: true });
  directory = undefined;
});

describe('provider packages', () => {
  it('a checkout from a provider whose package is missing fails before its intent record, naming the package', async () => {
    let loaded = false;
    const needy = defineProvider({
      name: 'needy',
      description: 'test: needs a package that is not installed',
      args: z.strictObject({}),
      packages: ['ssh2', MISSING],
      load: async () => {
        loaded = true;
        throw new Error('the implementation must not be loaded without its packages');
      },
    });
    directory = await mkdtemp(join(tmpdir(), 'hb-pkgs-'));
    await using broker = new Broker({ directory, providers: [needy] });
    const error = await broker.checkout({ provider: 'needy' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MissingDependencyError);
    expect(error).toMatchObject({ code: 'MISSING_DEPENDENCY', packageName: MISSING });
    expect((error as Error).message).toContain(`npm install ${MISSING}`);
    expect(loaded).toBe(false);
    // Nothing to release, nothing to forget: no record was written.
    expect(await inventoryOf(broker).list()).toEqual([]);
    expect(broker.providers().find((p) => p.name === 'needy')?.packages).toEqual([
      { name: 'ssh2', installed: true },
      { name: MISSING, installed: false },
    ]);
  });

  it('providers() lists what each built-in provider needs, and finds an ES-module-only package', async () => {
    directory = await mkdtemp(join(tmpdir(), 'hb-pkgs-'));
    await using broker = new Broker({ directory });
    const needs = Object.fromEntries(broker.providers().map((p) => [p.name, p.packages.map((k) => k.name)]));
    expect(needs).toMatchObject({
      local: [],
      static: [],
      container: ['dockerode', 'tar-stream'],
      ec2: ['@aws-sdk/client-ec2'],
      libvirt: ['@unraid/libvirt'],
    });
    // The test machine has every SDK (devDependencies); @unraid/libvirt exports no CommonJS entry.
    for (const p of broker.providers()) for (const k of p.packages) expect(k, p.name).toMatchObject({ installed: true });
    expect(isInstalled('@unraid/libvirt')).toBe(true);
    expect(isInstalled(MISSING)).toBe(false);
  });
});
