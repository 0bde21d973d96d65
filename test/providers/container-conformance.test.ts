/**
 * The provider conformance suite against the real engine, once with exec sessions (busybox
 * image) and once with SSH sessions (the Debian sshd image). Both images come from
 * scripts/setup-test-env.sh.
 */
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import type { HostRecord } from '../../lib/records.js';
import { providerConformance } from '../conformance.js';
import { BUSYBOX_IMAGE, SSHD_IMAGE, containerExists, probeEngine, removeBrokerContainers, tempDirectory } from '../helpers/engine.js';

const probe = await probeEngine();
const execDir = await tempDirectory('hb-container-conf-exec-');
const sshDir = await tempDirectory('hb-container-conf-ssh-');

const exists = async (record: HostRecord) => !!probe.engine && containerExists(probe.engine, record.providerId ?? record.name);

afterAll(async () => {
  // Whatever a failed test left behind.
  if (!probe.engine) return;
  for (const dir of [execDir, sshDir]) await removeBrokerContainers(probe.engine, new Broker({ directory: dir }).brokerId);
});

providerConformance({
  provider: 'container',
  broker: ({ providers }) => new Broker({ directory: execDir, ...(providers ? { providers } : {}) }),
  args: { image: BUSYBOX_IMAGE },
  count: 5,
  exists,
  skip: probe.skip,
});

providerConformance({
  provider: 'container',
  broker: ({ providers }) => new Broker({ directory: sshDir, ...(providers ? { providers } : {}) }),
  args: { image: SSHD_IMAGE, ssh: true },
  count: 5,
  exists,
  skip: probe.skip,
});
