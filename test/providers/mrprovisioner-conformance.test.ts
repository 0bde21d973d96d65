/**
 * The provider conformance suite for `mrprovisioner` through the Broker, against the fake
 * mr-provisioner server (test/helpers/fake-mrprovisioner.ts). Every machine's hostname is a real
 * test sshd, so the suite's commands and file round trip run over SSH.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { providerConformance } from '../../lib/testing/index.js';
import { mrprovisioner } from '../../providers/mrprovisioner/definition.js';
import { FakeMrProvisioner } from '../helpers/fake-mrprovisioner.js';
import { sshSettingsOf, sshdAvailable, startSshd } from '../helpers/sshd.js';

const available = sshdAvailable();
const sshd = available ? await startSshd() : undefined;
const fake = await new FakeMrProvisioner().start();
afterAll(async () => {
  await fake.stop();
  await sshd?.stop();
});
fake.tokens.set('conformance-token-1234', 'alice');
for (let i = 1; i <= 6; i++) fake.addMachine({ name: `bm${i}`, attrs: { arch: 'aarch64' }, ...(sshd ? { hostname: sshd.host } : {}) });
fake.addImage({ name: 'alice/vmlinuz.00000001', type: 'Kernel', user: 'alice' });
const directory = await mkdtemp(join(tmpdir(), 'hb-mrp-conf-'));

providerConformance({
  definition: mrprovisioner,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: {
        logLevel: 'silent',
        ...sshSettingsOf(sshd),
        mrprovisioner: { url: fake.url, token: 'conformance-token-1234', retries: 0 },
      },
      providers,
    }),
  args: { query: 'arch=aarch64', kernel: 'vmlinuz' },
  exists: async (record) => fake.machines.some((m) => String(m.id) === record.providerId && m.assignments.length > 0),
  skip: available ? false : 'no OpenSSH sshd on this machine (run scripts/setup-test-env.sh)',
  // Leases are the service's own (Beaker's watchdog; mr-provisioner has none): no lease tag to report.
  leaseTags: false,
});
