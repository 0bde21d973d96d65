/**
 * The provider conformance suite for `openstack`, through a real Broker, against FakeOpenStack.
 * Every server's fixed address is a real test sshd on 127.0.0.1, so the suite's commands and
 * file round trip run over SSH.
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
import { sshSettingsOf, sshdAvailable, startSshd } from '../helpers/sshd.js';
import { fakeInstance } from '../helpers/openstack-context.js';

const available = sshdAvailable();
const sshd = available ? await startSshd() : undefined;
const cloud = await FakeOpenStack.start(sshd ? { serverIp: sshd.host } : {});
const directory = await mkdtemp(join(tmpdir(), 'hostbroker-openstack-conf-'));

// The machine's own OS_* variables or clouds.yaml must not steer the test.
const isolated: typeof openstack = {
  ...openstack,
  load: async () => createOpenStackProvider({ sources: { env: {}, cwd: directory, home: directory } }),
};

afterAll(async () => {
  await cloud.close();
  await sshd?.stop();
  await rm(directory, { recursive: true, force: true });
});

providerConformance({
  definition: isolated,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: {
        ...sshSettingsOf(sshd),
        providers: { openstack: fakeInstance(cloud) },
      },
      providers,
    }),
  count: 3,
  skip: available ? false : 'no OpenSSH sshd on this machine (run scripts/setup-test-env.sh)',
  exists: async (record) => cloud.servers.has(record.providerId ?? '') || [...cloud.servers.values()].some((s) => s.metadata['hostbroker.id'] === record.id),
});
