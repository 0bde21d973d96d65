/**
 * The provider conformance suite for `openstack`, through a real Broker, against FakeOpenStack.
 * The fake's servers have addresses nobody can log in to, so the suite runs without sessions
 * (`waitForSsh: false`, `session: false`); everything else (intent records, N at once, sync,
 * failed release kept) is the same as for every provider.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { openstack } from '../../providers/openstack/definition.js';
import { createOpenStackProvider } from '../../providers/openstack/provider.js';
import { providerConformance } from '../../lib/testing/index.js';
import { FakeOpenStack } from '../helpers/openstack-cloud.js';
import { fakeInstance } from '../helpers/openstack-context.js';

const cloud = await FakeOpenStack.start();
const directory = await mkdtemp(join(tmpdir(), 'hostbroker-openstack-conf-'));

// The machine's own OS_* variables or clouds.yaml must not steer the test.
const isolated: typeof openstack = {
  ...openstack,
  load: async () => createOpenStackProvider({ sources: { env: {}, cwd: directory, home: directory } }),
};

afterAll(async () => {
  await cloud.close();
  await rm(directory, { recursive: true, force: true });
});

providerConformance({
  definition: isolated,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: { providers: { openstack: fakeInstance(cloud) } },
      providers,
    }),
  args: { waitForSsh: false },
  count: 3,
  session: false,
  exists: async (record) => cloud.servers.has(record.providerId ?? '') || [...cloud.servers.values()].some((s) => s.metadata['hostbroker.id'] === record.id),
});
