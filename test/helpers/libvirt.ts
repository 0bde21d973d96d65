/**
 * Test helpers for the libvirt provider: libvirt's built-in `test:///default` driver (in-process,
 * no daemon), an SSH public key, and a recording `virsh` for the storage/address steps the test
 * driver cannot share with another process.
 */
import { generateKeyPairSync } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HostRecord } from '../../lib/records.js';
import { type TestContext, intentRecord, testContext } from '../../lib/testing/index.js';
import { type LibvirtInstance, libvirt } from '../../providers/libvirt/definition.js';
import { type LibvirtConnection, loadLibvirt } from '../../providers/libvirt/provider.js';

/** A provider context for libvirt with these instance settings (parsed as the Broker does). */
export function makeContext(instanceSettings: Record<string, unknown>, brokerId = 'broker-test-1'): Promise<TestContext<LibvirtInstance>> {
  return testContext(libvirt, { instanceSettings, brokerId, owner: 'alice' });
}

/** An intent record with a lease of an hour (unless `fields` say otherwise). */
export function newRecord(t: TestContext<LibvirtInstance>, fields: Partial<HostRecord> = {}): HostRecord {
  return intentRecord(t, { leaseExpires: new Date(Date.now() + 3600_000).toISOString(), ...fields });
}

/** Why libvirt tests cannot run here, or undefined when they can. */
export async function libvirtUnavailable(): Promise<string | undefined> {
  try {
    const { Hypervisor } = await loadLibvirt();
    const c = new Hypervisor({ uri: 'test:///default' });
    await c.connectOpen();
    await c.connectClose();
    return undefined;
  } catch (error) {
    return `libvirt test driver unavailable: ${(error as Error).message}`;
  }
}

/**
 * A connection of the test itself to `test:///default`. Connections in one process share the
 * driver's state while any of them is open, so this also keeps the state alive between calls.
 */
export async function openTestDriver(): Promise<LibvirtConnection> {
  const { Hypervisor } = await loadLibvirt();
  const c = new Hypervisor({ uri: 'test:///default' });
  await c.connectOpen();
  return c;
}

/** Writes an OpenSSH ed25519 public key (and a dummy private key path beside it); returns both paths. */
export async function writeKeyPair(dir: string): Promise<{ privateKeyPath: string; publicKeyPath: string; publicKey: string }> {
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  const blob = Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]);
  const line = `ssh-ed25519 ${blob.toString('base64')} ci@hostbroker`;
  const privateKeyPath = join(dir, 'id_ed25519');
  await writeFile(privateKeyPath, 'not used by these tests\n', { mode: 0o600 });
  await writeFile(`${privateKeyPath}.pub`, `${line}\n`);
  return { privateKeyPath, publicKeyPath: `${privateKeyPath}.pub`, publicKey: line };
}

/** A `virsh` stand-in that logs each call (and the volume XML it was given) and answers like virsh. */
export async function recordingVirsh(
  dir: string,
  behaviour: { failOn?: string; address?: string } = {},
): Promise<{ path: string; calls(): Promise<string[][]>; volumeXml(): Promise<string> }> {
  const path = join(dir, 'virsh');
  const log = join(dir, 'virsh.log');
  const xml = join(dir, 'volume.xml.log');
  await writeFile(log, '');
  await writeFile(
    path,
    `#!/bin/sh
# args: -q -c URI command ...
printf '%s\\t' "$@" >> ${log}; printf '\\n' >> ${log}
cmd="$4"
if [ "$cmd" = "${behaviour.failOn ?? '-'}" ]; then echo "error: this function is not supported by the connection driver: $cmd" >&2; exit 1; fi
case "$cmd" in
  vol-path) echo "/var/lib/libvirt/images/$7" ;;
  vol-create) cat "$6" > ${xml} ;;
  vol-delete) [ "$7" = missing ] && { echo "error: failed to get vol '$7'" >&2; exit 1; } ;;
  domifaddr) ${behaviour.address ? `echo " vnet0      52:54:00:12:34:56    ipv4         ${behaviour.address}/24"` : 'true'} ;;
esac
exit 0
`,
  );
  await chmod(path, 0o755);
  return {
    path,
    calls: async () =>
      (await readFile(log, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t').filter(Boolean).slice(3)),
    volumeXml: () => readFile(xml, 'utf8'),
  };
}
