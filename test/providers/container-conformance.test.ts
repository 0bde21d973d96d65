/**
 * The provider conformance suite against the real engine, once with exec sessions (busybox
 * image) and once with SSH sessions (the Debian sshd image). Both images come from
 * scripts/setup-test-env.sh.
 */
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import type { HostRecord } from '../../lib/records.js';
import { container } from '../../providers/container/definition.js';
import { providerConformance } from '../../lib/testing/index.js';
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

// No reap grace: the suite's reap case asks for a container made a moment ago.
const settings = { container: { reapGrace: 0 } };

providerConformance({
  definition: container,
  broker: ({ providers }) => new Broker({ directory: execDir, settings, providers }),
  args: { image: BUSYBOX_IMAGE },
  count: 5,
  exists,
  skip: probe.skip,
});

providerConformance({
  definition: container,
  broker: ({ providers }) => new Broker({ directory: sshDir, settings, providers }),
  args: { image: SSHD_IMAGE, ssh: true },
  count: 5,
  exists,
  skip: probe.skip,
});
