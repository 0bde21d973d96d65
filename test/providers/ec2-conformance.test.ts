/**
 * The provider conformance suite for ec2 through the Broker, against a small stateful EC2 behind
 * aws-sdk-client-mock (no EC2 endpoint is reachable here). No SSH server answers at the fake
 * addresses, so there is no session (`session: false`, `waitForSsh: false`).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EC2Client } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { Broker } from '../../lib/broker/index.js';
import { providerConformance } from '../../lib/testing/index.js';
import { ec2 } from '../../providers/ec2/definition.js';
import { FakeEc2, fastSettings } from '../helpers/ec2.js';

const fake = new FakeEc2();
fake.install(mockClient(EC2Client));
const directory = await mkdtemp(join(tmpdir(), 'hb-ec2-conf-'));

providerConformance({
  definition: ec2,
  broker: ({ providers }) => new Broker({ directory, settings: { ec2: { ...fastSettings, runningTimeout: 5000 } }, providers }),
  args: { image: 'ami-0abcdef1234567890', waitForSsh: false },
  exists: async (record) => fake.live(record.providerId),
  session: false,
});
