/**
 * The provider conformance suite for `beaker` through the Broker, against the fake Beaker server
 * (test/helpers/fake-beaker.ts). No SSH server answers at the fake FQDNs: no session.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { providerConformance } from '../../lib/testing/index.js';
import { beaker } from '../../providers/beaker/definition.js';
import { FakeBeaker } from '../helpers/fake-beaker.js';

const fake = await new FakeBeaker().start();
afterAll(() => fake.stop());
fake.users.set('alice', 'conformance-password');
const directory = await mkdtemp(join(tmpdir(), 'hb-beaker-conf-'));

providerConformance({
  definition: beaker,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: { logLevel: 'silent', beaker: { url: fake.url, username: 'alice', password: 'conformance-password', pollInterval: '5ms', retries: 0 } },
      providers,
    }),
  args: { distro: 'RHEL-9.4.0', waitForSsh: false },
  exists: async (record) => {
    const job = fake.jobs.get(Number(/^J:(\d+)$/.exec(record.providerId ?? '')?.[1]));
    return !!job && !['Completed', 'Cancelled', 'Aborted'].includes(job.status);
  },
  session: false,
  // Leases are the service's own (Beaker's watchdog; mr-provisioner has none): no lease tag to report.
  leaseTags: false,
});
