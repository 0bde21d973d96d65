/**
 * The provider conformance suite for `static`, with three machines that are real sshds on
 * 127.0.0.1. A static machine outlives its host: the resource the suite asks about is the claim,
 * i.e. whether a record in the inventory holds the machine (`pool: true`).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import type { HostRecord } from '../../lib/records.js';
import { providerConformance } from '../../lib/testing/index.js';
import { staticProvider } from '../../providers/static/definition.js';
import { type Sshd, sshdAvailable, startSshd } from '../helpers/sshd.js';

const available = sshdAvailable();
const sshds: Sshd[] = available ? await Promise.all([0, 1, 2].map(() => startSshd())) : [];
afterAll(async () => {
  for (const s of sshds) await s.stop();
});
const directory = await mkdtemp(join(tmpdir(), 'hb-static-conf-'));
const settings = {
  static: {
    hosts: sshds.map((s, i) => ({
      name: `box${i}`,
      hostname: s.host,
      port: s.port,
      username: s.username,
      privateKeyPath: s.privateKeyPath,
      groups: ['conformance'],
    })),
  },
};
const view = new Broker({ directory, settings });

providerConformance({
  definition: staticProvider,
  broker: ({ providers }) => new Broker({ directory, settings, providers }),
  args: { group: 'conformance' },
  // Held while a record of the inventory claims it.
  exists: async (record: HostRecord) => (await view.inventory()).some((r) => r.id === record.id && r.data.address === record.data.address),
  sync: false,
  pool: true,
  skip: available ? false : 'no OpenSSH sshd on this machine (run scripts/setup-test-env.sh)',
});
