/**
 * The provider conformance suite for `mrprovisioner` through the Broker, against the fake
 * mr-provisioner server (test/helpers/fake-mrprovisioner.ts). No SSH server answers at the fake
 * hostnames: no session.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { providerConformance } from '../../lib/testing/index.js';
import { mrprovisioner } from '../../providers/mrprovisioner/definition.js';
import { FakeMrProvisioner } from '../helpers/fake-mrprovisioner.js';

const fake = await new FakeMrProvisioner().start();
afterAll(() => fake.stop());
fake.tokens.set('conformance-token-1234', 'alice');
for (let i = 1; i <= 6; i++) fake.addMachine({ name: `bm${i}`, attrs: { arch: 'aarch64' } });
fake.addImage({ name: 'alice/vmlinuz.00000001', type: 'Kernel', user: 'alice' });
const directory = await mkdtemp(join(tmpdir(), 'hb-mrp-conf-'));

providerConformance({
  definition: mrprovisioner,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: { logLevel: 'silent', mrprovisioner: { url: fake.url, token: 'conformance-token-1234', retries: 0 } },
      providers,
    }),
  args: { query: 'arch=aarch64', kernel: 'vmlinuz', waitForSsh: false },
  exists: async (record) => fake.machines.some((m) => String(m.id) === record.providerId && m.assignments.length > 0),
  session: false,
  // Leases are the service's own (Beaker's watchdog; mr-provisioner has none): no lease tag to report.
  leaseTags: false,
});
