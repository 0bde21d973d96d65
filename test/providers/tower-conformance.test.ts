/**
 * The provider conformance suite for `tower` through the Broker, against the fake AWX server
 * (test/helpers/fake-tower.ts). Its deploy workflow registers each VM in a Tower inventory with the
 * hostbroker tags it was given (as a real provisioning workflow would), and remove-vm takes it
 * out, extend-vm moves the lease tag. Each VM's address is a real test sshd on 127.0.0.1, so the
 * suite's commands and file round trip run over SSH.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { providerConformance } from '../../lib/testing/index.js';
import { tower } from '../../providers/tower/definition.js';
import { FakeTower } from '../helpers/fake-tower.js';
import { sshSettingsOf, sshdAvailable, startSshd } from '../helpers/sshd.js';

const available = sshdAvailable();
const sshd = available ? await startSshd() : undefined;
const fake = await FakeTower.start();
afterAll(async () => {
  await fake.close();
  await sshd?.stop();
});
const address = sshd?.host ?? '127.0.0.1';
const inventory = fake.addInventory('jdoe-inventory');
fake.addTemplate({
  name: 'deploy-vm',
  script: ({ n, extraVars }) => {
    const name = `vm-${n}`;
    fake.addHost({
      name,
      inventory,
      variables: { fqdn: address, hostbroker_tags: extraVars.hostbroker_tags },
      facts: { ansible_distribution: 'RedHat' },
    });
    return [{ name: 'deploy', status: 'successful', artifacts: { _broker_facts: { fqdn: address, name } } }];
  },
});
fake.addTemplate({
  name: 'remove-vm',
  script: ({ extraVars }) => {
    const i = fake.hosts.findIndex((h) => h.name === extraVars.source_vm);
    if (i >= 0) fake.hosts.splice(i, 1);
    return [{ name: 'remove', status: 'successful' }];
  },
});
fake.addTemplate({
  name: 'extend-vm',
  // As a real extend workflow would: the host's tags carry the new lease.
  script: ({ extraVars }) => {
    const host = fake.hosts.find((h) => h.name === extraVars.target_vm);
    if (host) host.variables = { ...host.variables, hostbroker_tags: extraVars.hostbroker_tags };
    return [{ name: 'extend', status: 'successful' }];
  },
});
const directory = await mkdtemp(join(tmpdir(), 'hb-tower-conf-'));

providerConformance({
  definition: tower,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: {
        logLevel: 'silent',
        ...sshSettingsOf(sshd),
        tower: { baseUrl: fake.url, token: fake.token, inventory: 'jdoe-inventory', pollInterval: 5, retryDelay: 5 },
      },
      providers,
    }),
  args: { workflow: 'deploy-vm' },
  exists: async (record) => fake.hosts.some((h) => h.name === record.providerId),
  skip: available ? false : 'no OpenSSH sshd on this machine (run scripts/setup-test-env.sh)',
});
