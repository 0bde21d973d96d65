/**
 * The provider conformance suite for `foreman` through the Broker, against the fake Foreman
 * server (test/helpers/fake-foreman.ts). No SSH server answers at the fake names, so there is no
 * session (`session: false`).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { providerConformance } from '../../lib/testing/index.js';
import { foreman } from '../../providers/foreman/definition.js';
import { FakeForeman } from '../helpers/fake-foreman.js';

const fake = await FakeForeman.start();
afterAll(() => fake.close());
fake.addHostgroup({ title: 'base/rhel9', polls: 1 });
const directory = await mkdtemp(join(tmpdir(), 'hb-foreman-conf-'));

providerConformance({
  definition: foreman,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: { logLevel: 'silent', foreman: { baseUrl: fake.url, username: fake.username, password: fake.password, pollInterval: 5, retryDelay: 5 } },
      providers,
    }),
  args: { hostgroup: 'base/rhel9', waitForSsh: false },
  exists: async (record) => fake.hosts.has(Number(record.providerId)),
  session: false,
});
