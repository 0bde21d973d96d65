/**
 * The provider conformance suite for `beaker` through the Broker, against the fake Beaker server
 * (test/helpers/fake-beaker.ts). Every reserved system is a real test sshd, so commands and the file round trip run.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { providerConformance } from '../../lib/testing/index.js';
import { beaker } from '../../providers/beaker/definition.js';
import { FakeBeaker } from '../helpers/fake-beaker.js';
import { sshSettingsOf, sshdAvailable, startSshd } from '../helpers/sshd.js';

const available = sshdAvailable();
const sshd = available ? await startSshd() : undefined;
const fake = await new FakeBeaker().start();
// Every reserved system is the test sshd, so the suite's commands and file round trip run.
fake.systemFqdn = sshd?.host;
afterAll(async () => {
  await fake.stop();
  await sshd?.stop();
});
fake.users.set('alice', 'conformance-password');
const directory = await mkdtemp(join(tmpdir(), 'hb-beaker-conf-'));

providerConformance({
  definition: beaker,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: {
        logLevel: 'silent',
        ...sshSettingsOf(sshd),
        beaker: { url: fake.url, username: 'alice', password: 'conformance-password', pollInterval: '5ms', retries: 0 },
      },
      providers,
    }),
  args: { distro: 'RHEL-9.4.0' },
  exists: async (record) => {
    const job = fake.jobs.get(Number(/^J:(\d+)$/.exec(record.providerId ?? '')?.[1]));
    return !!job && !['Completed', 'Cancelled', 'Aborted'].includes(job.status);
  },
  skip: available ? false : 'no OpenSSH sshd on this machine (run scripts/setup-test-env.sh)',
  // Leases are the service's own (Beaker's watchdog; mr-provisioner has none): no lease tag to report.
  leaseTags: false,
});
