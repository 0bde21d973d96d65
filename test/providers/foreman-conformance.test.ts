/**
 * The provider conformance suite for `foreman` through the Broker, against the fake Foreman
 * server (test/helpers/fake-foreman.ts). Every host's IP is a real test sshd on 127.0.0.1
 * (`address: ip`), so the suite's commands and file round trip run over SSH.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { providerConformance } from '../../lib/testing/index.js';
import { foreman } from '../../providers/foreman/definition.js';
import { FakeForeman } from '../helpers/fake-foreman.js';
import { sshSettingsOf, sshdAvailable, startSshd } from '../helpers/sshd.js';

const available = sshdAvailable();
const sshd = available ? await startSshd() : undefined;
const fake = await FakeForeman.start();
fake.hostIp = sshd?.host;
afterAll(async () => {
  await fake.close();
  await sshd?.stop();
});
fake.addHostgroup({ title: 'base/rhel9', polls: 1 });
const directory = await mkdtemp(join(tmpdir(), 'hb-foreman-conf-'));

providerConformance({
  definition: foreman,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: {
        logLevel: 'silent',
        ...sshSettingsOf(sshd),
        foreman: { baseUrl: fake.url, username: fake.username, password: fake.password, pollInterval: 5, retryDelay: 5, address: 'ip' },
      },
      providers,
    }),
  args: { hostgroup: 'base/rhel9' },
  exists: async (record) => fake.hosts.has(Number(record.providerId)),
  skip: available ? false : 'no OpenSSH sshd on this machine (run scripts/setup-test-env.sh)',
});
