/**
 * Builds what the Broker would hand the openstack provider: a ProviderContext over a temp
 * directory, and intent records, so the provider can be tested on its own against FakeOpenStack.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Inventory } from '../../lib/inventory/index.js';
import { createLogger } from '../../lib/logger.js';
import type { CheckoutTarget, ProviderContext } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { parseSettings } from '../../lib/settings.js';
import { OpenStackInstance } from '../../providers/openstack/definition.js';
import type { FakeOpenStack } from './openstack-cloud.js';

export const BROKER_ID = 'broker-test-0001';

/** Instance settings that reach the fake with password auth and fast polling. */
export function fakeInstance(cloud: FakeOpenStack, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    auth: {
      auth_url: cloud.authUrl,
      username: 'demo',
      password: cloud.users[0]!.password,
      project_name: 'demo',
      user_domain_name: 'Default',
      project_domain_name: 'Default',
    },
    region_name: 'RegionOne',
    image: 'cirros-0.6.2',
    flavor: 'm1.tiny',
    network: 'private',
    pollInterval: 2,
    retryDelay: 2,
    ...extra,
  };
}

export interface TestContext {
  ctx: ProviderContext;
  /** Log lines written at debug level. */
  logs: string[];
  directory: string;
  cleanup(): Promise<void>;
}

/** A context with `instance` as the instance settings (validated like the Broker does). */
export async function openstackContext(instance: Record<string, unknown>, options: { brokerId?: string; signal?: AbortSignal } = {}): Promise<TestContext> {
  const directory = await mkdtemp(join(tmpdir(), 'hostbroker-openstack-'));
  const logs: string[] = [];
  const ctx: ProviderContext = {
    provider: 'openstack',
    instance: 'default',
    instanceSettings: OpenStackInstance.parse(instance) as Record<string, unknown>,
    settings: parseSettings({}, ['openstack']),
    directory,
    brokerId: options.brokerId ?? BROKER_ID,
    owner: 'tester',
    logger: createLogger('debug', (line) => logs.push(line)),
    inventory: new Inventory(directory),
    signal: options.signal ?? new AbortController().signal,
  };
  return { ctx, logs, directory, cleanup: () => rm(directory, { recursive: true, force: true }) };
}

let counter = 0;

/** An intent record (state `provisioning`) as the Broker writes before calling checkout. */
export function intentRecord(ctx: ProviderContext, args: Record<string, unknown> = {}, fields: Partial<HostRecord> = {}): HostRecord {
  counter++;
  return {
    id: `rec-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`,
    name: `os-host-${counter}`,
    hostname: '',
    provider: 'openstack',
    instance: ctx.instance,
    state: 'provisioning',
    recipe: { provider: 'openstack', instance: ctx.instance, args },
    owner: ctx.owner,
    brokerId: ctx.brokerId,
    createdAt: new Date().toISOString(),
    leaseExpires: new Date(Date.now() + 3600_000).toISOString(),
    data: {},
    ...fields,
  };
}

/** Targets for a checkout of `count` hosts. */
export function targets(ctx: ProviderContext, count: number, args: Record<string, unknown> = {}): CheckoutTarget[] {
  return Array.from({ length: count }, (_, index) => ({ record: intentRecord(ctx, args), index, count }));
}
