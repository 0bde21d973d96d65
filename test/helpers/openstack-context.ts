/**
 * What the Broker would hand the openstack provider (contexts and records from hostbroker/testing),
 * so the provider can be tested on its own against FakeOpenStack.
 */
import type { CheckoutTarget, HostContext } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { type TestContext, intentRecord, testContext, testHostContext } from '../../lib/testing/index.js';
import { type OpenStackInstance, openstack } from '../../providers/openstack/definition.js';
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

/** A context with `instance` as the instance settings (parsed as the Broker parses them). */
export function openstackContext(
  instance: Record<string, unknown>,
  options: { brokerId?: string; signal?: AbortSignal } = {},
): Promise<TestContext<OpenStackInstance>> {
  return testContext(openstack, {
    instanceSettings: instance,
    brokerId: options.brokerId ?? BROKER_ID,
    owner: 'tester',
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/** An intent record (state `provisioning`, a lease of an hour) as the Broker writes before calling checkout. */
export function newRecord(t: TestContext<OpenStackInstance>, args: Record<string, unknown> = {}, fields: Partial<HostRecord> = {}): HostRecord {
  return intentRecord(t, {
    recipe: { provider: 'openstack', instance: t.ctx.instance, args },
    leaseExpires: new Date(Date.now() + 3600_000).toISOString(),
    ...fields,
  });
}

/** Targets for a checkout of `count` hosts. */
export function targets(t: TestContext<OpenStackInstance>, count: number, args: Record<string, unknown> = {}): CheckoutTarget[] {
  return Array.from({ length: count }, (_, index) => ({ record: newRecord(t, args), index, count }));
}

/** The host context the Broker passes for a target's (or a record's) host. */
export function on(t: TestContext<OpenStackInstance>, of: CheckoutTarget | HostRecord): HostContext<OpenStackInstance> {
  return testHostContext(t, 'record' in of ? of.record : of);
}
