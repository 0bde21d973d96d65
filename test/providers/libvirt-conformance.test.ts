/**
 * The provider conformance suite for libvirt on the built-in `test:///default` driver, through the
 * Broker. The simulated domains run no guest, so there is no SSH session (`session: false`) and
 * no address (`waitForAddress: false`: hosts are named by domain).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import type { HostRecord } from '../../lib/records.js';
import { providerConformance } from '../../lib/testing/index.js';
import { libvirt } from '../../providers/libvirt/definition.js';
import { libvirtUnavailable, openTestDriver, writeKeyPair } from '../helpers/libvirt.js';

const unavailable = await libvirtUnavailable();
const directory = await mkdtemp(join(tmpdir(), 'hb-libvirt-conf-'));
const keys = await writeKeyPair(directory);
// Keeps the test driver's state alive and lets the suite look at domains on its own.
const keeper = unavailable ? undefined : await openTestDriver();
afterAll(async () => keeper?.connectClose());

const exists = async (record: HostRecord) => {
  const name = (record.data as { domain?: string }).domain;
  return (
    !!keeper &&
    !!name &&
    (await keeper.domainLookupByName(name).then(
      () => true,
      () => false,
    ))
  );
};

providerConformance({
  definition: libvirt,
  broker: ({ providers }) =>
    new Broker({
      directory,
      settings: { libvirt: { uri: 'test:///default', pool: 'default-pool', waitForAddress: false } },
      providers,
    }),
  args: { baseImage: 'debian-12.qcow2', privateKeyPath: keys.privateKeyPath, waitForSsh: false },
  exists,
  session: false,
  skip: unavailable ?? false,
});
