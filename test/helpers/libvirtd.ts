/**
 * Test helpers for the libvirt provider on a real hypervisor: libvirtd on `qemu:///system`
 * (started here when it is not running; left running, like the Podman service, because its first
 * call costs ~12 s), a dir storage pool in a temp dir holding the base volume, the guest image
 * scripts/build-guest-image.sh caches, a real SSH key pair, and the Broker settings that use them.
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { loadLibvirt } from '../../providers/libvirt/provider.js';

const run = promisify(execFile);
export const URI = 'qemu:///system';
/** Where scripts/build-guest-image.sh links the current guest image. */
export const GUEST_IMAGE = process.env.HOSTBROKER_GUEST_IMAGE ?? '/var/cache/hostbroker/guest-image';

/** Runs `virsh -c qemu:///system ARGS`; stdout. */
export async function virsh(...args: string[]): Promise<string> {
  return (await run('virsh', ['-q', '-c', URI, ...args], { timeout: 120_000 })).stdout;
}

/** Whether `virsh ARGS` succeeds. */
export async function virshOk(...args: string[]): Promise<boolean> {
  return virsh(...args).then(
    () => true,
    () => false,
  );
}

const answers = () => virshOk('version');

/** Starts virtlogd and libvirtd (daemonized) when libvirtd does not answer. */
async function ensureLibvirtd(): Promise<void> {
  // A root-only /dev/kvm makes libvirtd re-probe QEMU at every define (~45 s): see setup-test-env.sh.
  if (process.getuid?.() === 0) await run('sh', ['-c', '[ ! -c /dev/kvm ] || ! getent group kvm >/dev/null || { chgrp kvm /dev/kvm && chmod 660 /dev/kvm; }']);
  if (await answers()) return;
  await run('sh', ['-c', 'pgrep -x virtlogd >/dev/null || virtlogd -d; pgrep -x libvirtd >/dev/null || libvirtd -d']);
  // The first call after a start probes QEMU's capabilities (~12 s here).
  for (let i = 0; i < 60 && !(await answers()); i++) await new Promise((r) => setTimeout(r, 1000));
  if (!(await answers())) throw new Error('libvirtd was started but does not answer on qemu:///system');
}

/** Why real-hypervisor tests cannot run here (undefined when they can); starts libvirtd if needed. */
export async function qemuUnavailable(): Promise<string | undefined> {
  try {
    await loadLibvirt();
  } catch (error) {
    return `the @unraid/libvirt binding does not load: ${(error as Error).message}`;
  }
  for (const [tool, pkg] of [
    ['virsh', 'libvirt-clients'],
    ['libvirtd', 'libvirt-daemon-system'],
    ['qemu-system-x86_64', 'qemu-system-x86'],
    ['genisoimage', 'genisoimage'],
  ] as const) {
    if (
      !(await run('sh', ['-c', `command -v ${tool}`]).then(
        () => true,
        () => false,
      ))
    )
      return `${tool} is missing (apt-get install ${pkg}; scripts/setup-test-env.sh does it)`;
  }
  for (const f of ['vmlinuz', 'initrd.img', 'rootfs.qcow2', 'cmdline']) {
    if (!(await stat(join(GUEST_IMAGE, f)).catch(() => undefined)))
      return `no guest image at ${GUEST_IMAGE} (run scripts/build-guest-image.sh as root; scripts/setup-test-env.sh does)`;
  }
  if (process.getuid?.() !== 0 && !(await answers())) return 'libvirtd is not running and only root starts it here';
  try {
    await ensureLibvirtd();
  } catch (error) {
    return `libvirtd: ${(error as Error).message}`;
  }
  return undefined;
}

/** A broker directory whose settings use a new dir pool (with the base volume) and user-mode networking. */
export interface QemuLab {
  directory: string;
  pool: string;
  poolDir: string;
  privateKeyPath: string;
  /** Checkout arguments: base volume, direct kernel boot, small guest. */
  args: { baseImage: string; kernel: string; initrd: string; cmdline: string; memory: number; disk: number };
  /** The libvirt settings instance written to broker_settings.yaml. */
  settings: Record<string, unknown>;
  /** Destroys every domain this lab's broker made, then the pool and the temp dirs. */
  cleanup(): Promise<void>;
}

/** Sets up a {@link QemuLab}: a transient dir pool named `prefix-<random>`, the base copied in, a key pair. */
export async function qemuLab(prefix: string): Promise<QemuLab> {
  const directory = await mkdtemp(join(tmpdir(), `${prefix}-dir-`));
  const poolDir = await mkdtemp(join(tmpdir(), `${prefix}-pool-`));
  // QEMU runs as libvirt-qemu: it must reach the volumes.
  await chmod(poolDir, 0o755);
  const pool = poolDir.split('/').pop()!;
  await copyFile(join(GUEST_IMAGE, 'rootfs.qcow2'), join(poolDir, 'base.qcow2'));
  await virsh('pool-create-as', pool, 'dir', '--target', poolDir);
  const privateKeyPath = join(directory, 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hostbroker-qemu-test', '-f', privateKeyPath]);
  const settings = {
    uri: URI,
    domainType: 'qemu',
    pool,
    network: { mode: 'user', restrict: true },
    seedBus: 'scsi',
    // Software emulation on a shared CI machine: boots take tens of seconds.
    addressTimeout: '4m',
    pollInterval: '1s',
    username: 'cloud',
    privateKeyPath,
  };
  await writeFile(join(directory, 'broker_settings.yaml'), stringify({ libvirt: settings, ssh: { readyTimeout: '4m' } }));
  const cmdline = (await readFile(join(GUEST_IMAGE, 'cmdline'), 'utf8')).trim();
  const args = {
    baseImage: 'base.qcow2',
    kernel: join(GUEST_IMAGE, 'vmlinuz'),
    initrd: join(GUEST_IMAGE, 'initrd.img'),
    cmdline,
    memory: 256,
    disk: 2,
  };
  return {
    directory,
    pool,
    poolDir,
    privateKeyPath,
    args,
    settings,
    async cleanup() {
      // Whatever a failed test left: domains whose volumes are in this pool.
      for (const name of (await virsh('list', '--all', '--name').catch(() => '')).split('\n').filter(Boolean)) {
        const xml = await virsh('dumpxml', '--inactive', name).catch(() => '');
        if (!xml.includes(`pool='${pool}'`)) continue;
        await virsh('destroy', name).catch(() => undefined);
        await virsh('undefine', name).catch(() => undefined);
      }
      await virsh('pool-destroy', pool).catch(() => undefined);
      await rm(poolDir, { recursive: true, force: true });
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** Names of the volumes in a pool. */
export async function volumes(pool: string): Promise<string[]> {
  await virsh('pool-refresh', pool);
  return (await virsh('vol-list', pool))
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean)
    .sort();
}

/** Whether a domain of that name exists. */
export const domainExists = (name: string) => virshOk('dominfo', name);
