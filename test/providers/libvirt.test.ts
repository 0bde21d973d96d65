/**
 * The libvirt provider against libvirt's built-in `test:///default` driver (a real libvirt API
 * over a simulated hypervisor, in-process, no daemon). The driver's state is per process, so the
 * storage and address steps (done by `virsh`, a separate process) are checked two ways: with a
 * recording virsh for the provider's sequence, and with the real virsh on test:///default for
 * what libvirt accepts.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MissingDependencyError, ProviderError, TimeoutError, UserInputError } from '../../lib/errors.js';
import { reapable } from '../../lib/broker/reap-rule.js';
import type { HostRecord } from '../../lib/records.js';
import { type TestContext, readyRecord, testHostContext } from '../../lib/testing/index.js';
import { type LibvirtInstance, LibvirtInstance as InstanceSchema, libvirt } from '../../providers/libvirt/definition.js';
import { type LibvirtConnection, createLibvirtProvider, domainNameOf, loadLibvirt } from '../../providers/libvirt/provider.js';
import { buildSeedIso, cloudInitSeed } from '../../providers/libvirt/seed.js';
import { Virsh, parseDomifaddr } from '../../providers/libvirt/virsh.js';
import { metadataXml, parseMetadata } from '../../providers/libvirt/xml.js';
import { libvirtUnavailable, makeContext, newRecord, openTestDriver, recordingVirsh, writeKeyPair } from '../helpers/libvirt.js';

const run = promisify(execFile);
const unavailable = await libvirtUnavailable();
if (unavailable && process.env.CI === 'true') throw new Error(unavailable);
const hasVirsh = await run('virsh', ['--version']).then(
  () => true,
  () => false,
);
const hasIsoTool = await run('genisoimage', ['--version']).then(
  () => true,
  () => false,
);

describe.skipIf(unavailable)(`libvirt provider on test:///default${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  let keeper: LibvirtConnection;
  let t: TestContext<LibvirtInstance>;
  let keys: Awaited<ReturnType<typeof writeKeyPair>>;
  let provider: ReturnType<typeof createLibvirtProvider>;

  beforeAll(async () => {
    keeper = await openTestDriver();
  });
  afterAll(async () => {
    await keeper.connectClose();
  });
  beforeEach(async () => {
    t = await makeContext({ uri: 'test:///default', waitForAddress: false, pool: 'default-pool' });
    keys = await writeKeyPair(t.directory);
    provider = createLibvirtProvider();
  });
  afterEach(async () => {
    await provider.close?.();
    await t.cleanup();
  });

  const args = (extra: Record<string, unknown> = {}) => libvirt.args.parse({ baseImage: 'debian-12.qcow2', privateKeyPath: keys.privateKeyPath, ...extra });
  const exists = async (name: string) =>
    keeper.domainLookupByName(name).then(
      () => true,
      () => false,
    );
  const checkout = async (extra: Record<string, unknown> = {}, fields: Partial<HostRecord> = {}) => {
    const record = newRecord(t, fields);
    return { record, host: await provider.checkout(args(extra), { record, index: 0, count: 1 }, testHostContext(t, record)) };
  };

  it('defines and starts a domain with the asked resources, tagged in its metadata', async () => {
    const { record, host } = await checkout({ memory: 2048, vcpus: 2, username: 'cloud' });
    const name = domainNameOf(record);
    const domain = await keeper.domainLookupByName(name);
    expect((await domain.getInfo()).state).toBe(1); // running
    const xml = await domain.getXMLDesc();
    expect(xml).toContain("<memory unit='KiB'>2097152</memory>");
    expect(xml).toMatch(/<vcpu[^>]*>2<\/vcpu>/);
    expect(xml).toContain(`<source pool='default-pool' volume='${name}.qcow2'/>`);
    expect(xml).toContain(`<source pool='default-pool' volume='${name}-seed.iso'/>`);
    expect(xml).toContain(`<mac address='${(host.data as { mac: string }).mac}'/>`);
    expect(parseMetadata(xml)).toEqual({
      id: record.id,
      owner: 'alice',
      broker: 'broker-test-1',
      name: record.name,
      lease: record.leaseExpires,
      created: record.createdAt,
      volumes: [
        { pool: 'default-pool', name: `${name}.qcow2`, role: 'disk' },
        { pool: 'default-pool', name: `${name}-seed.iso`, role: 'seed' },
      ],
    });
    // waitForAddress: false → reached by domain name (libvirt NSS).
    expect(host).toMatchObject({
      hostname: name,
      providerId: await domain.getUUIDString(),
      connection: { kind: 'ssh', host: name, username: 'cloud', privateKeyPath: keys.privateKeyPath },
      data: { uri: 'test:///default', domain: name, volumeMode: 'plan' },
    });
  });

  it('releases a record still provisioning by finding its domain through the metadata id', async () => {
    const record = newRecord(t);
    // A domain made under another name (e.g. by an older version) but carrying the record id.
    await keeper.domainDefineXML(
      `<domain type='test'><name>odd-name-${record.id}</name><metadata>${metadataXml({ id: record.id, owner: 'alice', broker: 'broker-test-1', name: record.name, volumes: [] })}</metadata><memory unit='MiB'>128</memory><os><type>hvm</type></os></domain>`,
    );
    await provider.release(record, testHostContext(t, record));
    expect(await exists(`odd-name-${record.id}`)).toBe(false);
  });

  it('never touches a domain of the same name that is not the record’s', async () => {
    const record = newRecord(t);
    const name = domainNameOf(record);
    await keeper.domainDefineXML(`<domain type='test'><name>${name}</name><memory unit='MiB'>128</memory><os><type>hvm</type></os></domain>`);
    await provider.release(record, testHostContext(t, record));
    expect(await exists(name)).toBe(true);
    await (await keeper.domainLookupByName(name)).undefine();
  });

  it('extends by rewriting the lease in the persistent metadata, which sync then reports', async () => {
    const { record, host } = await checkout();
    await provider.extend!(readyRecord(t, record, host), '2031-02-03T04:05:06.000Z', testHostContext(t, record));
    const xml = await (await keeper.domainLookupByName(domainNameOf(record))).getXMLDesc(2);
    expect(parseMetadata(xml)?.lease).toBe('2031-02-03T04:05:06.000Z');
    const found = (await provider.discover!(t.ctx)).find((h) => h.id === record.id);
    expect(found).toMatchObject({
      leaseExpires: '2031-02-03T04:05:06.000Z',
      owner: 'alice',
      brokerId: 'broker-test-1',
      name: record.name,
      hostname: domainNameOf(record),
    });
  });

  it('lists only this broker’s domains for sync', async () => {
    const { record } = await checkout();
    const other = await makeContext({ uri: 'test:///default', waitForAddress: false }, 'another-broker');
    const foreign = newRecord(other);
    await keeper.domainDefineXML(
      `<domain type='test'><name>foreign-${foreign.id}</name><metadata>${metadataXml({ id: foreign.id, owner: 'bob', broker: 'another-broker', name: 'x', volumes: [] })}</metadata><memory unit='MiB'>128</memory><os><type>hvm</type></os></domain>`,
    );
    const ids = (await provider.discover!(t.ctx)).map((h) => h.id);
    expect(ids).toContain(record.id);
    expect(ids).not.toContain(foreign.id);
    expect((await provider.discover!(other.ctx)).map((h) => h.id)).toContain(foreign.id);
    await (await keeper.domainLookupByName(`foreign-${foreign.id}`)).undefine();
    await other.cleanup();
  });

  it('reports what the reap rule needs: the domains whose record is gone or whose lease passed are picked, and release removes them', async () => {
    const kept = await checkout();
    const lost = await checkout();
    const expired = await checkout({}, { leaseExpires: '2000-01-01T00:00:00.000Z' });
    // The test driver keeps the domains of earlier tests: judge only these three.
    const mine = (await provider.discover!(t.ctx)).filter((d) => [kept, lost, expired].some((c) => c.record.id === d.id));
    const doomed = reapable(mine, {
      brokerId: 'broker-test-1',
      isKnown: (id) => id === kept.record.id || id === expired.record.id,
      now: Date.now(),
      graceMs: 0,
    });
    expect(doomed.map((d) => d.host.id).sort()).toEqual([lost.record.id, expired.record.id].sort());
    for (const { host } of doomed) await provider.release({ ...newRecord(t, { id: host.id }), data: host.data ?? {} }, testHostContext(t, host.id));
    expect(await exists(domainNameOf(kept.record))).toBe(true);
    expect(await exists(domainNameOf(lost.record))).toBe(false);
    expect(await exists(domainNameOf(expired.record))).toBe(false);
  });

  it('refuses a private key given as the public key, and a missing key', async () => {
    await expect(checkout({ publicKeyPath: keys.privateKeyPath })).rejects.toThrow(UserInputError);
    await expect(checkout({ privateKeyPath: undefined, publicKeyPath: join(t.directory, 'nope.pub') })).rejects.toThrow(
      /cannot read the public key .*nope\.pub/,
    );
  });

  describe('with volumes made by virsh', () => {
    // The seed ISO needs genisoimage or xorriso.
    it.skipIf(!hasIsoTool && process.env.CI !== 'true')(
      'creates the overlay and seed volumes, waits for the lease address, and deletes the volumes on release',
      async () => {
        const virsh = await recordingVirsh(t.directory, { address: '192.168.122.50' });
        t.ctx.instanceSettings = InstanceSchema.parse({ uri: 'test:///default', pool: 'default-pool', volumes: 'virsh', virsh: virsh.path, pollInterval: 1 });
        const { record, host } = await checkout({ disk: 20 });
        const name = domainNameOf(record);
        expect(host.hostname).toBe('192.168.122.50');
        const calls = await virsh.calls();
        expect(calls.map((c) => c[0])).toEqual(['vol-path', 'vol-create', 'vol-create-as', 'vol-upload', 'domifaddr']);
        expect(calls[0]).toEqual(['vol-path', '--pool', 'default-pool', 'debian-12.qcow2']);
        expect(calls[2]!.slice(1, 3)).toEqual(['default-pool', `${name}-seed.iso`]);
        expect(calls[4]).toEqual(['domifaddr', name, '--source', 'lease']);
        const volume = await virsh.volumeXml();
        expect(volume).toContain(`<name>${name}.qcow2</name>`);
        expect(volume).toContain(`<capacity unit='bytes'>${20 * 2 ** 30}</capacity>`);
        expect(volume).toContain("<backingStore><path>/var/lib/libvirt/images/debian-12.qcow2</path><format type='qcow2'/></backingStore>");
        await provider.release(readyRecord(t, record, host), testHostContext(t, record));
        expect((await virsh.calls()).slice(5)).toEqual([
          ['vol-delete', '--pool', 'default-pool', `${name}.qcow2`],
          ['vol-delete', '--pool', 'default-pool', `${name}-seed.iso`],
        ]);
        expect(await exists(name)).toBe(false);
      },
    );

    it.skipIf(!hasIsoTool && process.env.CI !== 'true')('deletes what it made when a step fails, and defines no domain', async () => {
      const virsh = await recordingVirsh(t.directory, { failOn: 'vol-upload' });
      t.ctx.instanceSettings = InstanceSchema.parse({ uri: 'test:///default', pool: 'default-pool', volumes: 'virsh', virsh: virsh.path });
      const record = newRecord(t);
      await expect(provider.checkout(args(), { record, index: 0, count: 1 }, testHostContext(t, record))).rejects.toThrow(
        /virsh vol-upload on test:\/\/\/default failed: this function is not supported/,
      );
      const deleted = (await virsh.calls()).filter((c) => c[0] === 'vol-delete').map((c) => c[3]);
      expect(deleted).toEqual(expect.arrayContaining([`${domainNameOf(record)}.qcow2`, `${domainNameOf(record)}-seed.iso`]));
      expect(await exists(domainNameOf(record))).toBe(false);
    });

    it('gives up waiting for an address with a TimeoutError that says what to check, and removes the domain', async () => {
      const virsh = await recordingVirsh(t.directory);
      t.ctx.instanceSettings = InstanceSchema.parse({
        uri: 'test:///default',
        pool: 'default-pool',
        volumes: 'plan',
        virsh: virsh.path,
        addressTimeout: 50,
        pollInterval: 10,
      });
      const record = newRecord(t);
      const error = await provider.checkout(args(), { record, index: 0, count: 1 }, testHostContext(t, record)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TimeoutError);
      expect((error as Error).message).toMatch(/got no IPv4 address from its network's DHCP leases .* waitForAddress: false/);
      expect(await exists(domainNameOf(record))).toBe(false);
    });
  });
});

describe.skipIf(!hasVirsh && process.env.CI !== 'true')('virsh steps against the real test:///default driver', () => {
  const virsh = new Virsh('test:///default');

  it('creates an overlay volume from the provider’s XML, which libvirt accepts', async () => {
    await expect(virsh.createOverlay('default-pool', 'web-1.qcow2', 10 * 2 ** 30, '/var/lib/libvirt/images/base.qcow2', 'qcow2')).resolves.toBeUndefined();
  });

  it('treats deleting a missing volume as done, but reports other failures', async () => {
    await expect(virsh.deleteVolume('default-pool', 'gone.qcow2')).resolves.toBeUndefined();
    await expect(virsh.deleteVolume('no-such-pool', 'x.qcow2')).rejects.toThrow(/virsh vol-delete on test:\/\/\/default failed: .*no-such-pool/);
  });

  it('reads a domain’s address from its DHCP lease (the driver’s built-in `test` domain)', async () => {
    expect(await virsh.addresses('test', 'lease')).toEqual(['192.168.122.3']);
  });

  it('names the package to install when virsh is missing', async () => {
    await expect(new Virsh('test:///default', '/nonexistent/virsh').run(['list'])).rejects.toThrow(/install libvirt-clients/);
  });
});

describe('libvirt seed, XML and loading (no hypervisor needed)', () => {
  it('writes a cloud-init seed that creates the user with the key', () => {
    const seed = cloudInitSeed({
      instanceId: 'hb-1',
      hostname: 'web-1',
      username: 'cloud',
      publicKey: 'ssh-ed25519 AAAAC3Nza ci@x\n',
      extra: { packages: ['git'] },
    });
    expect(parseYaml(seed['meta-data'])).toEqual({ 'instance-id': 'hb-1', 'local-hostname': 'web-1' });
    expect(seed['user-data'].startsWith('#cloud-config\n')).toBe(true);
    expect(parseYaml(seed['user-data'])).toEqual({
      hostname: 'web-1',
      users: [{ name: 'cloud', sudo: 'ALL=(ALL) NOPASSWD:ALL', shell: '/bin/bash', lock_passwd: true, ssh_authorized_keys: ['ssh-ed25519 AAAAC3Nza ci@x'] }],
      packages: ['git'],
    });
    const root = parseYaml(cloudInitSeed({ instanceId: 'i', hostname: 'h', username: 'root', publicKey: 'ssh-ed25519 K', guestAgent: true })['user-data']);
    expect(root).toMatchObject({ disable_root: false, ssh_authorized_keys: ['ssh-ed25519 K'], packages: ['qemu-guest-agent'] });
  });

  it.skipIf(!hasIsoTool && process.env.CI !== 'true')('builds a NoCloud ISO labelled cidata holding user-data and meta-data', async () => {
    const seed = cloudInitSeed({ instanceId: 'hb-2', hostname: 'db-1', username: 'cloud', publicKey: 'ssh-ed25519 AAAAkey ci@x' });
    const iso = await buildSeedIso(seed);
    try {
      const { stdout: info } = await run('isoinfo', ['-d', '-i', iso.path]);
      expect(info).toMatch(/Volume id: cidata/);
      const { stdout: userData } = await run('isoinfo', ['-R', '-i', iso.path, '-x', '/user-data']);
      expect(userData).toBe(seed['user-data']);
    } finally {
      await iso.cleanup();
    }
  });

  it('round-trips metadata with characters XML must escape', () => {
    const meta = {
      id: 'hb-1',
      owner: 'o<&>"\'',
      broker: 'b',
      name: 'n',
      lease: '2030-01-01T00:00:00.000Z',
      volumes: [{ pool: 'p&q', name: 'v<1>', role: 'disk' as const }],
    };
    expect(parseMetadata(`<domain><metadata>${metadataXml(meta)}</metadata></domain>`)).toEqual(meta);
    expect(parseMetadata('<domain><metadata><other xmlns="urn:x"/></metadata></domain>')).toBeUndefined();
  });

  it('parses virsh domifaddr output, skipping loopback', () => {
    const out =
      ' Name       MAC address          Protocol     Address\n-------------------------------------------------------\n lo         00:00:00:00:00:00    ipv4         127.0.0.1/8\n vnet3      52:54:00:ab:cd:ef    ipv4         192.168.122.77/24\n -          -                    ipv6         fe80::1/64\n';
    expect(parseDomifaddr(out)).toEqual(['192.168.122.77']);
  });

  it('says what to install when the native package is missing', async () => {
    const missing = Object.assign(new Error("Cannot find package '@unraid/libvirt'"), { code: 'ERR_MODULE_NOT_FOUND' });
    const error = await loadLibvirt(() => Promise.reject(missing)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MissingDependencyError);
    expect((error as Error).message).toMatch(/npm install @unraid\/libvirt/);
    expect((error as Error).message).toMatch(/libvirt-dev/);
    const broken = Object.assign(new Error('libvirt.so.0: cannot open shared object file'), { code: 'ERR_DLOPEN_FAILED' });
    await expect(loadLibvirt(() => Promise.reject(broken))).rejects.toThrow(MissingDependencyError);
  });

  it('fails checkout with that error, not a crash, when the binding cannot load', async () => {
    const t = await makeContext({ uri: 'qemu:///system', volumes: 'plan', waitForAddress: false });
    const keys = await writeKeyPair(t.directory);
    const provider = createLibvirtProvider({
      loadModule: () => loadLibvirt(() => Promise.reject(Object.assign(new Error('nope'), { code: 'ERR_MODULE_NOT_FOUND' }))),
    });
    const record = newRecord(t);
    await expect(
      provider.checkout(
        libvirt.args.parse({ baseImage: 'b', privateKeyPath: keys.privateKeyPath }),
        { record, index: 0, count: 1 },
        testHostContext(t, record),
      ),
    ).rejects.toThrow(MissingDependencyError);
    await t.cleanup();
  });

  it('maps a topology host: os → base image, flavor `MiB:vcpus:GiB`, network', () => {
    const mapped = libvirt.fromTopology!(
      { name: 'ipa1', groups: ['ipaserver'], os: 'fedora-40', network: 'lab', args: {} },
      { images: { 'fedora-40': '/var/lib/libvirt/images/fedora-40.qcow2' }, flavors: { ipaserver: '4096:2:30' }, networks: { lab: 'hb-lab' } },
    );
    expect(mapped).toEqual({ name: 'ipa1', baseImage: '/var/lib/libvirt/images/fedora-40.qcow2', memory: 4096, vcpus: 2, disk: 30, network: 'hb-lab' });
    expect(libvirt.args.safeParse(mapped).success).toBe(true);
  });

  it.skipIf(unavailable)('reports an unreachable hypervisor with what to check', async () => {
    const t = await makeContext({ uri: 'qemu+unix:///system?socket=/nonexistent/sock', waitForAddress: false, volumes: 'plan' });
    const keys = await writeKeyPair(t.directory);
    const provider = createLibvirtProvider();
    const record = newRecord(t);
    const error = await provider
      .checkout(libvirt.args.parse({ baseImage: 'b', privateKeyPath: keys.privateKeyPath }), { record, index: 0, count: 1 }, testHostContext(t, record))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as Error).message).toMatch(/cannot connect to qemu\+unix.*check that libvirtd/);
    await t.cleanup();
  });
});
