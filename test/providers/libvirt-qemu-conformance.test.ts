/**
 * The provider conformance suite for libvirt on a real hypervisor (qemu:///system, TCG): real
 * guests from the image scripts/build-guest-image.sh builds, on QEMU user-mode networking with
 * their SSH forwarded to 127.0.0.1, volumes in a dir pool of their own. Whether a host exists is
 * asked of libvirt (virsh), not the provider. The test:///default run (libvirt-conformance.test.ts)
 * stays for what it covers fast.
 */
import { afterAll, vi } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import type { HostRecord } from '../../lib/records.js';
import { providerConformance } from '../../lib/testing/index.js';
import { libvirt } from '../../providers/libvirt/definition.js';
import { domainNameOf } from '../../providers/libvirt/provider.js';
import { domainExists, type QemuLab, qemuLab, qemuUnavailable } from '../helpers/libvirtd.js';

const unavailable = await qemuUnavailable();
// Guests boot under software emulation: minutes, not the default minute, per test.
vi.setConfig({ testTimeout: 600_000, hookTimeout: 300_000 });
// Made before the suite's own beforeAll (which makes the Broker from these settings).
const lab: QemuLab | undefined = unavailable ? undefined : await qemuLab('hb-qemu-conf');
afterAll(async () => lab?.cleanup(), 120_000);

providerConformance({
  definition: libvirt,
  broker: ({ providers }) => new Broker({ directory: lab!.directory, providers }),
  args: { ...lab?.args },
  exists: (record: HostRecord) => domainExists((record.data as { domain?: string }).domain ?? domainNameOf(record)),
  // Two guests for the multi-host checkout: enough to show they boot in parallel on distinct forwards.
  count: 2,
  skip: unavailable ?? false,
});
