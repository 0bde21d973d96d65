/**
 * The libvirt provider on a real hypervisor: libvirtd with QEMU (TCG software emulation, no KVM
 * here), real guests booted from the image scripts/build-guest-image.sh builds, a real dir storage
 * pool, QEMU user-mode networking with SSH forwarded to 127.0.0.1 (no traffic to libvirt's NAT
 * network). Checked with virsh, independently of the provider. Every domain is destroyed in
 * afterAll whatever happened.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import type { HostRecord } from '../../lib/records.js';
import { domainNameOf } from '../../providers/libvirt/provider.js';
import { parseMetadata } from '../../providers/libvirt/xml.js';
import { domainExists, type QemuLab, qemuLab, qemuUnavailable, virsh, volumes } from '../helpers/libvirtd.js';
import { nodeTs, ROOT } from '../reliability/util.js';

const unavailable = await qemuUnavailable();
if (unavailable && process.env.CI === 'true') throw new Error(`libvirt on QEMU cannot run in CI: ${unavailable}`);
const VM_TEST = 300_000;

describe.skipIf(Boolean(unavailable))(`libvirt provider on qemu:///system with real guests${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  let lab: QemuLab;
  let broker: Broker;
  const dataOf = (r: HostRecord) => r.data as { domain: string; pool: string; forwards: Array<{ guest: number; port: number }> };

  beforeAll(async () => {
    lab = await qemuLab('hb-qemu');
    broker = new Broker({ directory: lab.directory });
  }, 120_000);
  afterAll(async () => {
    await broker?.checkin({ all: true }).catch(() => undefined);
    await broker?.close();
    await lab?.cleanup();
  }, 120_000);

  it(
    'checks out a guest on a qcow2 overlay of the pool volume, reached over its SSH forward; checkin destroys the domain and its volumes',
    async () => {
      const started = Date.now();
      const host = await broker.checkout({ provider: 'libvirt', ...lab.args });
      console.log(`[libvirt-qemu] one guest: boot to SSH login in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      const record = host.record;
      const name = domainNameOf(record);
      const forward = dataOf(record).forwards.find((f) => f.guest === 22)!;
      expect(record.ports).toEqual({ '22': { host: '127.0.0.1', port: forward.port } });
      expect(record.connection).toMatchObject({ kind: 'ssh', host: '127.0.0.1', port: forward.port, username: 'cloud' });

      // What libvirt holds: ACPI, direct kernel boot, the forward bound on loopback only.
      const xml = await virsh('dumpxml', '--inactive', name);
      expect(xml).toContain('<acpi/>');
      expect(xml).toContain(`<kernel>${lab.args.kernel}</kernel>`);
      expect(xml).toContain(`hostfwd=tcp:127.0.0.1:${forward.port}-:22`);
      expect(parseMetadata(xml)).toMatchObject({ id: record.id, forwards: [{ guest: 22, host: '127.0.0.1', port: forward.port }] });
      expect(await volumes(lab.pool)).toEqual(['base.qcow2', `${name}-seed.iso`, `${name}.qcow2`].sort());
      const overlay = await virsh('vol-dumpxml', '--pool', lab.pool, `${name}.qcow2`);
      expect(overlay).toContain(`<path>${join(lab.poolDir, 'base.qcow2')}</path>`);
      expect(overlay).toMatch(/<capacity unit='bytes'>2147483648<\/capacity>/);

      // The seed was honoured: user with the key and sudo, the domain name as host name.
      const who = await host.execute('printf "%s %s " "$(id -un)" "$(hostname)"; sudo -n id -u');
      expect(who).toMatchObject({ status: 0, stdout: `cloud ${name} 0\n` });

      // Files both ways, binary-safe.
      const data = Buffer.from(Array.from({ length: 70_001 }, (_, i) => (i * 7) % 256));
      await host.session.write(data, 'qemu/round-trip.bin');
      expect(Buffer.compare(await host.session.read('qemu/round-trip.bin'), data)).toBe(0);
      expect((await host.execute('wc -c < qemu/round-trip.bin')).stdout.trim()).toBe('70001');

      // Extend: the lease in the persistent definition follows.
      await broker.extend(host, { lease: '5h' });
      const extended = (await broker.inventory({ filter: `id=${record.id}` }))[0]!;
      expect(parseMetadata(await virsh('dumpxml', '--inactive', name))?.lease).toBe(extended.leaseExpires);

      await broker.checkin(host);
      expect(await domainExists(name)).toBe(false);
      expect(await volumes(lab.pool)).toEqual(['base.qcow2']);
    },
    VM_TEST,
  );

  it(
    'checks out two guests at once on distinct forwards, with an extra forwarded port',
    async () => {
      const started = Date.now();
      await using group = await broker.checkout({ provider: 'libvirt', ...lab.args, network: { mode: 'user', ports: [8080], restrict: true }, count: 2 });
      console.log(`[libvirt-qemu] two guests in parallel: both reachable over SSH in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      const sshPorts = group.map((h) => h.record.ports?.['22']?.port);
      const webPorts = group.map((h) => h.record.ports?.['8080']?.port);
      expect(new Set([...sshPorts, ...webPorts]).size).toBe(4);
      expect((await group.execute('hostname')).map((r) => r.stdout.trim())).toEqual(group.map((h) => domainNameOf(h.record)));

      // A service in the guest is reached at the forward the record names.
      const [first] = group;
      await first!.execute('cd /tmp && echo served-by-guest > index.html && (setsid python3 -m http.server 8080 >/dev/null 2>&1 </dev/null &)');
      const web = first!.record.ports!['8080']!;
      let body = '';
      for (let i = 0; i < 120 && !body; i++) {
        body = await fetch(`http://${web.host}:${web.port}/index.html`, { signal: AbortSignal.timeout(5000) })
          .then((r) => (r.ok ? r.text() : ''))
          .catch(() => '');
        if (!body) await new Promise((r) => setTimeout(r, 500));
      }
      expect(body).toBe('served-by-guest\n');
    },
    VM_TEST,
  );

  it(
    'after a checkout killed mid-way, sync reads the SSH forward from the domain metadata and reap removes domain and volumes',
    async () => {
      const [cmd, argv] = nodeTs(join(ROOT, 'test/reliability/children/checkout.ts'), lab.directory, '1', JSON.stringify({ provider: 'libvirt', ...lab.args }));
      const child = spawn(cmd, argv, { stdio: 'ignore' });
      try {
        // Killed once its domain runs, before SSH answers or the record is ready.
        let name = '';
        for (let i = 0; i < 240 && !name; i++) {
          for (const d of (await virsh('list', '--name')).split('\n').filter(Boolean)) {
            if ((await virsh('dumpxml', '--inactive', d)).includes(`pool='${lab.pool}'`)) name = d;
          }
          if (!name) await new Promise((r) => setTimeout(r, 500));
        }
        expect(name).not.toBe('');
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));

        const other = new Broker({ directory: lab.directory });
        try {
          const [stuck] = await other.inventory({ filter: 'provider=libvirt' });
          expect(stuck?.state).toBe('provisioning');
          const meta = parseMetadata(await virsh('dumpxml', '--inactive', name))!;
          expect(meta.id).toBe(stuck!.id);
          const forward = meta.forwards!.find((f) => f.guest === 22)!;

          const { updated } = await other.sync('libvirt');
          const synced = updated.find((r) => r.id === stuck!.id);
          expect(synced?.connection).toMatchObject({ kind: 'ssh', host: '127.0.0.1', port: forward.port });
          expect(synced?.ports).toEqual({ '22': { host: '127.0.0.1', port: forward.port } });
          expect(synced?.data).toMatchObject({ domain: name, network: 'user', forwards: meta.forwards });

          // The process that held it is gone: reap releases it.
          const { released } = await other.reap('libvirt');
          expect(released.map((r) => r.id)).toContain(stuck!.id);
          expect(await domainExists(name)).toBe(false);
          expect(await volumes(lab.pool)).toEqual(['base.qcow2']);
          expect(await other.inventory({ filter: 'provider=libvirt' })).toEqual([]);
        } finally {
          await other.close();
        }
      } finally {
        child.kill('SIGKILL');
      }
    },
    VM_TEST,
  );
});
