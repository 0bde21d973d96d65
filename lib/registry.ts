/**
 * The built-in providers. Adding a provider means adding its folder under `providers/` and one
 * line here (and one line in {@link ProviderArgs} for typed checkout arguments).
 * Definitions are light (their schemas are built on first use); implementations load on first use.
 * @module
 */
import type { z } from 'zod';
import type { AnyProviderDefinition } from './provider.js';
import { local } from '../providers/local/definition.js';
import { container } from '../providers/container/definition.js';
import { ec2 } from '../providers/ec2/definition.js';
import { libvirt } from '../providers/libvirt/definition.js';
import { openstack } from '../providers/openstack/definition.js';
import { tower } from '../providers/tower/definition.js';
import { foreman } from '../providers/foreman/definition.js';
import { beaker } from '../providers/beaker/definition.js';
import { mrprovisioner } from '../providers/mrprovisioner/definition.js';
import { staticProvider } from '../providers/static/definition.js';

/** Every built-in provider definition. */
export const builtinProviders: readonly AnyProviderDefinition[] = [
  local,
  container,
  ec2,
  openstack,
  libvirt,
  tower,
  foreman,
  beaker,
  mrprovisioner,
  staticProvider,
];

/**
 * Checkout arguments of each built-in provider, by name: gives `broker.checkout({ provider })`
 * its argument types. Custom providers can extend it by declaration merging:
 * `declare module 'hostbroker' { interface ProviderArgs { mine: { size: number } } }`.
 */
export interface ProviderArgs {
  local: z.input<typeof local.args>;
  container: z.input<typeof container.args>;
  ec2: z.input<typeof ec2.args>;
  libvirt: z.input<typeof libvirt.args>;
  openstack: z.input<typeof openstack.args>;
  tower: z.input<typeof tower.args>;
  foreman: z.input<typeof foreman.args>;
  beaker: z.input<typeof beaker.args>;
  mrprovisioner: z.input<typeof mrprovisioner.args>;
  static: z.input<typeof staticProvider.args>;
}
