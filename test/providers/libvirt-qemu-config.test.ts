/**
 * The parts of the libvirt provider's user-mode networking and XML handling that need no guest:
 * the domain XML it writes, the metadata it reads back (fast-xml-parser), user-supplied device
 * XML refused with the line named, free forward ports, and the SSH-banner wait against real TCP
 * servers on loopback. The real guests are in libvirt-qemu.test.ts.
 */
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type BrokerError, ProviderError, UserInputError } from '../../lib/errors.js';
import { testHostContext } from '../../lib/testing/index.js';
import { libvirt } from '../../providers/libvirt/definition.js';
import { createLibvirtProvider } from '../../providers/libvirt/provider.js';
import { freeForwards, portMapOf, sshBanner, waitForSshBanner } from '../../providers/libvirt/user-net.js';
import { checkDevicesXml, type DomainSpec, domainXml, parseMetadata, withLease } from '../../providers/libvirt/xml.js';
import { libvirtUnavailable, makeContext, newRecord, openTestDriver, writeKeyPair } from '../helpers/libvirt.js';

const unavailable = await libvirtUnavailable();
if (unavailable && process.env.CI === 'true') throw new Error(unavailable);

const spec = (extra: Partial<DomainSpec> = {}): DomainSpec => ({
  type: 'qemu',
  name: 'web-1-abc123',
  memoryMiB: 256,
  vcpus: 1,
  nic: { mode: 'user', forwards: [{ guest: 22, host: '127.0.0.1', port: 40022 }], restrict: true },
  mac: '52:54:00:01:02:03',
  disk: { pool: 'p', name: 'web-1-abc123.qcow2', role: 'disk' },
  diskFormat: 'qcow2',
  seed: { pool: 'p', name: 'web-1-abc123-seed.iso', role: 'seed' },
  seedBus: 'scsi',
  metadata: { id: 'hb-abc123', owner: 'alice', broker: 'b1', name: 'web-1', volumes: [], forwards: [{ guest: 22, host: '127.0.0.1', port: 40022 }] },
  ...extra,
});

describe('domain XML for user-mode networking', () => {
  it('forwards on loopback through QEMU arguments, with a virtio NIC on its own slot and no libvirt network', () => {
    const xml = domainXml(spec({ boot: { kernel: '/k/vmlinuz', initrd: '/k/initrd.img', cmdline: 'console=ttyS0 root=/dev/vda' } }));
    expect(xml).toContain("xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'");
    expect(xml).toContain("<qemu:arg value='user,id=hbnet0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22'/>");
    expect(xml).toContain("<qemu:arg value='virtio-net-pci,netdev=hbnet0,mac=52:54:00:01:02:03,bus=pci.0,addr=0x1f'/>");
    expect(xml).not.toContain('<interface');
    expect(xml).toContain('<features><acpi/><apic/></features>');
    expect(xml).toContain('<kernel>/k/vmlinuz</kernel><initrd>/k/initrd.img</initrd><cmdline>console=ttyS0 root=/dev/vda</cmdline>');
    expect(xml).toContain("<controller type='scsi' model='virtio-scsi'/>");
    expect(xml).toContain("<target dev='sda' bus='scsi'/>");
  });

  it('keeps a libvirt network NIC and the SATA seed as before', () => {
    const xml = domainXml(spec({ nic: { mode: 'network', network: 'lab' }, seedBus: 'sata' }));
    expect(xml).toContain("<interface type='network'><source network='lab'/><mac address='52:54:00:01:02:03'/><model type='virtio'/></interface>");
    expect(xml).not.toContain('qemu:commandline');
    expect(xml).not.toContain('virtio-scsi');
    expect(xml).toContain("<target dev='sda' bus='sata'/>");
  });

  it('reads the forwards back from the metadata, and extend rewrites only the lease', () => {
    const xml = domainXml(spec());
    expect(parseMetadata(xml)?.forwards).toEqual([{ guest: 22, host: '127.0.0.1', port: 40022 }]);
    const leased = withLease(xml, '2031-01-01T00:00:00.000Z');
    expect(parseMetadata(leased)).toEqual({ ...parseMetadata(xml), lease: '2031-01-01T00:00:00.000Z' });
    // The rest of the definition survives the rewrite (namespaced QEMU arguments included).
    expect(leased).toContain('<qemu:arg value="user,id=hbnet0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"/>');
    expect(leased).toContain('xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"');
    expect(leased).toContain('<source pool="p" volume="web-1-abc123.qcow2"/>');
  });

  it('finds the metadata whatever prefix libvirt keeps, and none in a domain without it', () => {
    const xml = `<domain><metadata><x:host xmlns:x="urn:hostbroker:host:1"><x:id>hb-9</x:id><x:forward guest="22" port="41000"/></x:host></metadata></domain>`;
    expect(parseMetadata(xml)).toMatchObject({ id: 'hb-9', forwards: [{ guest: 22, host: '127.0.0.1', port: 41000 }] });
    expect(parseMetadata('<domain><metadata><x:host xmlns:x="urn:other"><x:id>hb-9</x:id></x:host></metadata></domain>')).toBeUndefined();
  });

  it('refuses malformed device XML with a UserInputError naming the line, and text outside elements', () => {
    const error = (() => {
      try {
        checkDevicesXml("<disk type='file'>\n  <source file='/x.img'>\n</disk>");
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(UserInputError);
    expect((error as BrokerError).code).toBe('USER_INPUT');
    expect((error as Error).message).toMatch(/`devices` XML is not well-formed XML: line 3, column \d+/);
    expect(() => checkDevicesXml('hello <disk/>')).toThrow(UserInputError);
    expect(() => checkDevicesXml("<disk type='file' device='disk'><source file='/x.img'/><target dev='vdb' bus='virtio'/></disk>")).not.toThrow();
  });

  it('calls XML libvirt gave that cannot be parsed a ProviderError', () => {
    expect(() => parseMetadata('<domain><metadata>')).toThrow(ProviderError);
  });
});

describe('forward ports and the SSH banner', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });
  const serve = async (onConnection: (socket: import('node:net').Socket) => void): Promise<number> => {
    const server = createServer(onConnection);
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return (server.address() as { port: number }).port;
  };

  it('picks distinct free ports, SSH first, each guest port once', async () => {
    const forwards = await freeForwards('127.0.0.1', [8080, 22, 8080, 443]);
    expect(forwards.map((f) => f.guest)).toEqual([22, 8080, 443]);
    expect(new Set(forwards.map((f) => f.port)).size).toBe(3);
    // Free now: QEMU can bind each of them.
    for (const f of forwards) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(f.port, '127.0.0.1', () => resolve());
      });
    }
    const again = await freeForwards('127.0.0.1', []);
    expect(forwards.map((f) => f.port)).not.toContain(again[0]!.port);
    expect(portMapOf(forwards)).toEqual(Object.fromEntries(forwards.map((f) => [String(f.guest), { host: '127.0.0.1', port: f.port }])));
  });

  it('tells a listening sshd from a port that accepts and closes (as QEMU does before the guest listens)', async () => {
    const ssh = await serve((s) => s.end('SSH-2.0-OpenSSH_9.2\r\n'));
    const closer = await serve((s) => s.destroy());
    const silent = await serve(() => undefined);
    const other = await serve((s) => s.end('HTTP/1.1 400 Bad Request\r\n'));
    expect(await sshBanner('127.0.0.1', ssh, 2000)).toBe(true);
    expect(await sshBanner('127.0.0.1', closer, 2000)).toBe(false);
    expect(await sshBanner('127.0.0.1', silent, 300)).toBe(false);
    expect(await sshBanner('127.0.0.1', other, 2000)).toBe(false);
  });

  it('stops waiting when the domain stops, and when time runs out', async () => {
    const closer = await serve((s) => s.destroy());
    const signal = new AbortController().signal;
    const base = { host: '127.0.0.1', port: closer, intervalMs: 10, signal };
    expect(await waitForSshBanner({ ...base, timeoutMs: 60_000, running: async () => false })).toBe('stopped');
    expect(await waitForSshBanner({ ...base, timeoutMs: 200, running: async () => true })).toBe('timeout');
    let calls = 0;
    const late = await serve((s) => (++calls < 3 ? s.destroy() : s.end('SSH-2.0-x\r\n')));
    expect(await waitForSshBanner({ ...base, port: late, timeoutMs: 60_000, running: async () => true })).toBe('ready');
  });
});

describe.skipIf(Boolean(unavailable))('checkout refuses bad user-mode and boot arguments before making anything', () => {
  it('refuses user mode on the test driver, initrd without kernel, and malformed devices XML; no domain is defined', async () => {
    const keeper = await openTestDriver();
    const t = await makeContext({ uri: 'test:///default', waitForAddress: false, pool: 'default-pool' });
    const keys = await writeKeyPair(t.directory);
    const provider = createLibvirtProvider();
    try {
      const before = (await keeper.connectListAllDomains()).length;
      for (const extra of [{ network: { mode: 'user' } }, { initrd: '/boot/initrd.img' }, { devices: '<disk type="file">\n<source file="/x"/>\n</disks>' }]) {
        const args = libvirt.args.parse({ baseImage: 'debian-12.qcow2', privateKeyPath: keys.privateKeyPath, ...extra });
        const record = newRecord(t);
        const error = await provider.checkout(args, { record, index: 0, count: 1 }, testHostContext(t, record)).catch((e: unknown) => e);
        expect((error as BrokerError).code, JSON.stringify(extra)).toBe('USER_INPUT');
      }
      expect((await keeper.connectListAllDomains()).length).toBe(before);
    } finally {
      await provider.close?.();
      await keeper.connectClose();
      await t.cleanup();
    }
  });
});
