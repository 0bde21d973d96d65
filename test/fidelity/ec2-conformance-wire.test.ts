/**
 * The provider conformance suite for ec2 through the Broker with the real @aws-sdk/client-ec2
 * against the local EC2 Query API endpoint (test/helpers/ec2-query.ts), besides the
 * client-mock run in test/providers/ec2-conformance.test.ts. The provider reaches instances on
 * port 22 only, which no test sshd can own here: no session (`session: false`).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { providerConformance } from '../../lib/testing/index.js';
import { ec2 } from '../../providers/ec2/definition.js';
import { Ec2QueryServer } from '../helpers/ec2-query.js';

const server = await Ec2QueryServer.start();
afterAll(() => server.close());
const directory = await mkdtemp(join(tmpdir(), 'hb-ec2-wire-conf-'));

providerConformance({
  definition: ec2,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: {
        logLevel: 'silent',
        ec2: server.settings(),
      },
      providers,
    }),
  args: { image: 'ami-0abcdef1234567890', waitForSsh: false },
  exists: async (record) => server.live(record.providerId),
  session: false,
});
