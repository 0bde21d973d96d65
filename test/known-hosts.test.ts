/**
 * Pinned host keys end to end: `<broker directory>/known_hosts` rendered from the records and kept
 * in step with the inventory (checkout, first login, checkin, sync, writers racing), keys known at
 * creation (`local`) pinned before any connection, keys of other hosts (`static`, a real sshd)
 * pinned at the first login, real OpenSSH checking them with `StrictHostKeyChecking yes`, and a
 * changed key refused by OpenSSH, by the library and by `hostbroker ssh`.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Broker, HostConnectionError } from '../lib/index.js';
import { keepPinnedKey, knownHostsPattern, lineFingerprint, pinHostKey, renderKnownHosts, syncKnownHosts } from '../lib/known-hosts.js';
import { defineProvider, type ProviderImplementation } from '../lib/provider.js';
import type { HostRecord, SshConnection } from '../lib/records.js';
import { startSshd, sshdAvailable, type Sshd } from './helpers/sshd.js';
import { changeHostKey, freshConnectError } from './helpers/host-keys.js';
import { SSHD_IMAGE, containersOfBroker, probeEngine, removeBrokerContainers, skipReason } from './helpers/engine.js';
import { LABELS } from '../providers/container/create-request.js';

const run = promisify(execFile);
const KEY_A = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHB3IbTJzMED1a/2Sf4D5zgxgMSfmTEIwRYUXxI5GVri';
const KEY_B = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPprE9IlVYWw3oBWTZhukFnDuujOo6fCdUF/pZE/9Kwh';

function record(id: string, connection?: HostRecord['connection']): HostRecord {
  return {
    id,
    name: id,
    hostname: '',
    provider: 'static',
    instance: 'default',
    state: 'ready',
    recipe: { provider: 'static', args: {} },
    owner: 'me',
    brokerId: 'b',
    createdAt: '2026-01-01T00:00:00Z',
    data: {},
    ...(connection ? { connection } : {}),
  };
}

function ssh(host: string, port: number, extra: Partial<SshConnection> = {}): SshConnection {
  return { kind: 'ssh', host, port, username: 'u', ...extra };
}

/** The lines of a known_hosts file that are not comments. */
async function entries(path: string): Promise<string[]> {
  return (await readFile(path, 'utf8')).split('\n').filter((l) => l && !l.startsWith('#'));
}

/** The OpenSSH client, told to check host keys against `knownHosts` only and never to ask. */
function opensshArgs(c: SshConnection, knownHosts: string): string[] {
  return [
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=10',
    '-o',
    `UserKnownHostsFile=${knownHosts}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-i',
    c.privateKeyPath!,
    '-p',
    String(c.port),
    `${c.username}@${c.host}`,
  ];
}

async function openssh(c: SshConnection, knownHosts: string, command: string): Promise<{ status: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('ssh', [...opensshArgs(c, knownHosts), command], { timeout: 30_000, killSignal: 'SIGKILL' });
    return { status: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { status: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('known_hosts rendering and pinning (pure)', () => {
  it('names hosts as OpenSSH looks them up: bare on port 22, [host]:port elsewhere, IPv6 too', () => {
    expect(knownHostsPattern('10.0.0.1', 22)).toBe('10.0.0.1');
    expect(knownHostsPattern('127.0.0.1', 40123)).toBe('[127.0.0.1]:40123');
    expect(knownHostsPattern('::1', 2222)).toBe('[::1]:2222');
    expect(knownHostsPattern('[::1]', 22)).toBe('::1');
  });

  it('lists SSH records with a whole key, once each, sorted; skips fingerprint-only, keyless and non-SSH ones', () => {
    const text = renderKnownHosts([
      record('b', ssh('10.0.0.2', 22, { hostPublicKey: KEY_B })),
      record('a', ssh('10.0.0.1', 2222, { hostPublicKey: KEY_A })),
      record('dup', ssh('10.0.0.1', 2222, { hostPublicKey: KEY_A })),
      record('fp', ssh('10.0.0.3', 22, { hostKey: lineFingerprint(KEY_A) })),
      record('none', ssh('10.0.0.4', 22)),
      record('exec', { kind: 'provider' }),
      record('provisioning'),
    ]);
    expect(text.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual([`10.0.0.2 ${KEY_B}`, `[10.0.0.1]:2222 ${KEY_A}`].sort());
    expect(renderKnownHosts([])).toMatch(/^#[^\n]*\n$/);
  });

  it('pins a first key whole, completes a fingerprint-only pin only with the matching key, never replaces a pin', () => {
    const fresh = record('x', ssh('h', 22));
    expect(pinHostKey(fresh, lineFingerprint(KEY_A), `${KEY_A} comment`)).toBe(true);
    expect(fresh.connection).toMatchObject({ hostKey: lineFingerprint(KEY_A), hostPublicKey: KEY_A });
    expect(pinHostKey(fresh, lineFingerprint(KEY_B), KEY_B)).toBe(false);
    expect(fresh.connection).toMatchObject({ hostKey: lineFingerprint(KEY_A), hostPublicKey: KEY_A });

    const old = record('y', ssh('h', 22, { hostKey: lineFingerprint(KEY_A) }));
    expect(pinHostKey(old, lineFingerprint(KEY_B), KEY_B)).toBe(false);
    expect((old.connection as SshConnection).hostPublicKey).toBeUndefined();
    expect(pinHostKey(old, lineFingerprint(KEY_A), KEY_A)).toBe(true);
    expect((old.connection as SshConnection).hostPublicKey).toBe(KEY_A);
    expect(pinHostKey(record('z', { kind: 'provider' }), lineFingerprint(KEY_A), KEY_A)).toBe(false);
    expect(pinHostKey(undefined, lineFingerprint(KEY_A), KEY_A)).toBe(false);
  });

  it('keeps a pinned key through sync unless the provider reports one itself', () => {
    const pinned = ssh('h', 22, { hostKey: lineFingerprint(KEY_A), hostPublicKey: KEY_A });
    expect(keepPinnedKey(ssh('h', 2200), pinned)).toEqual(ssh('h', 2200, { hostKey: lineFingerprint(KEY_A), hostPublicKey: KEY_A }));
    expect(keepPinnedKey(ssh('h', 22, { hostPublicKey: KEY_B }), pinned)).toEqual(ssh('h', 22, { hostPublicKey: KEY_B }));
    expect(keepPinnedKey({ kind: 'provider' }, pinned)).toEqual({ kind: 'provider' });
    expect(keepPinnedKey(undefined, pinned)).toBeUndefined();
  });
});

describe('syncKnownHosts', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hb-kh-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the file 0600, atomically (no temp file left), and ends at the newest records when calls pile up', async () => {
    let records: HostRecord[] = [];
    const calls = Array.from({ length: 20 }, (_, i) => {
      records = [...records, record(`h${i}`, ssh('127.0.0.1', 1000 + i, { hostPublicKey: i % 2 ? KEY_A : KEY_B }))];
      return syncKnownHosts(dir, async () => records);
    });
    await Promise.all(calls);
    const path = join(dir, 'known_hosts');
    expect(await entries(path)).toHaveLength(20);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('puts the newer view back when a writer with an older one (another process) lands after it', async () => {
    // Two directory names for one folder: two writers that do not know of each other, as two processes.
    const alias = join(dir, 'alias');
    await symlink(dir, alias);
    const older = [record('old', ssh('127.0.0.1', 2001, { hostPublicKey: KEY_A }))];
    const current = [...older, record('new', ssh('127.0.0.1', 2002, { hostPublicKey: KEY_B }))];
    let releaseSlow: () => void = () => undefined;
    const slowRead = new Promise<void>((r) => (releaseSlow = r));
    let slowReads = 0;
    // The slow writer read the older records, and stalls until the fast one has written the newer.
    const slow = syncKnownHosts(alias, async () => {
      if (slowReads++ > 0) return current;
      await slowRead;
      return older;
    });
    await syncKnownHosts(dir, async () => current);
    expect(await entries(join(dir, 'known_hosts'))).toHaveLength(2);
    releaseSlow();
    await slow;
    expect(await entries(join(dir, 'known_hosts'))).toEqual(
      renderKnownHosts(current)
        .split('\n')
        .filter((l) => l && !l.startsWith('#')),
    );
    expect(slowReads).toBeGreaterThan(1);
  });
});

/** A provider whose hosts are one real sshd and whose inventory (sync) reports no host keys. */
function syncableSshd(sshd: Sshd) {
  const made = new Map<string, HostRecord>();
  const connection = (): SshConnection => ({ kind: 'ssh', host: sshd.host, port: sshd.port, username: sshd.username, privateKeyPath: sshd.privateKeyPath });
  const impl: ProviderImplementation<Record<string, never>> = {
    async checkout(_args, { record }) {
      made.set(record.id, record);
      return { hostname: sshd.host, providerId: record.id, connection: connection() };
    },
    async release(record) {
      made.delete(record.id);
    },
    async discover() {
      return [...made.values()].map((r) => ({ id: r.id, name: r.name, hostname: sshd.host, providerId: r.id, connection: connection() }));
    },
  };
  return defineProvider({
    name: 'sshd-sync',
    description: 'test: one sshd, with sync',
    args: z.strictObject({}),
    load: async () => impl as ProviderImplementation,
  });
}

describe.skipIf(!sshdAvailable())('the broker’s known_hosts with real hosts and real OpenSSH', { timeout: 180_000 }, () => {
  let dir: string;
  let sshd: Sshd;
  let broker: Broker;
  let knownHosts: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hb-kh-'));
    sshd = await startSshd();
    knownHosts = join(dir, 'known_hosts');
    broker = new Broker({
      directory: dir,
      providers: [syncableSshd(sshd)],
      settings: {
        logLevel: 'silent',
        static: { hosts: [{ name: 'lab1', hostname: sshd.host, port: sshd.port, username: sshd.username, privateKeyPath: sshd.privateKeyPath }] },
      },
    });
  });
  afterAll(async () => {
    await broker?.checkin({ all: true }).catch(() => undefined);
    await broker?.close();
    await sshd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('pins a local host’s key from its creation: listed before any connection, and OpenSSH logs in strictly, without a prompt', async () => {
    const host = await broker.checkout({ provider: 'local', waitForSsh: false });
    const c = host.record.connection as SshConnection;
    const made = (await readFile(join(String(host.record.data.folder), 'host_key.pub'), 'utf8')).trim().split(' ').slice(0, 2).join(' ');
    expect(c.hostPublicKey).toBe(made);
    expect(c.hostKey).toBe(lineFingerprint(made));
    expect(await entries(knownHosts)).toContain(`[${c.host}]:${c.port} ${made}`);
    // OpenSSH is the first client ever to connect: nothing was trusted on first use.
    const r = await openssh(c, knownHosts, 'echo pinned-$((40+2))');
    expect(r).toMatchObject({ status: 0, stdout: 'pinned-42\n' });
    expect(r.stderr).not.toMatch(/Permanently added|authenticity/);

    // sync rebuilds the record from the host folder; the key stays pinned.
    await broker.sync('local');
    expect(((await broker.find(host.id))!.connection as SshConnection).hostPublicKey).toBe(made);

    await broker.checkin(host);
    expect(await entries(knownHosts)).not.toContain(`[${c.host}]:${c.port} ${made}`);
  });

  it('pins a static host’s key at hostbroker’s first login (the checkout), keeps it through sync, and OpenSSH then checks it', async () => {
    const served = (await readFile(join(sshd.dir, 'host_key.pub'), 'utf8')).trim().split(' ').slice(0, 2).join(' ');
    const lab = await broker.checkout({ provider: 'static', name: 'lab1' });
    const pinned = (await broker.find(lab.id))!.connection as SshConnection;
    expect(pinned.hostPublicKey).toBe(served);
    expect(await entries(knownHosts)).toContain(`[${sshd.host}]:${sshd.port} ${served}`);
    expect((await openssh(pinned, knownHosts, 'echo static-ok')).stdout).toBe('static-ok\n');

    // A provider whose sync reports no key: the pinned one survives the sync.
    const other = await broker.checkout({ provider: 'sshd-sync' });
    expect(((await broker.find(other.id))!.connection as SshConnection).hostPublicKey).toBe(served);
    await broker.sync('sshd-sync');
    expect(((await broker.find(other.id))!.connection as SshConnection).hostPublicKey).toBe(served);
    await broker.checkin(other);
    // The static host still holds that address, so its line stays.
    expect(await entries(knownHosts)).toContain(`[${sshd.host}]:${sshd.port} ${served}`);
    await broker.checkin(lab);
    expect(await entries(knownHosts)).toEqual([]);
  });

  it('refuses a changed host key: OpenSSH, the library (HOST_CONNECTION naming the host) and `hostbroker ssh` (exit 5)', async () => {
    const lab = await broker.checkout({ provider: 'static', name: 'lab1' });
    const pinned = (await broker.find(lab.id))!.connection as SshConnection;
    await lab.disconnect();
    await changeHostKey(sshd);
    try {
      const byOpenssh = await openssh(pinned, knownHosts, 'true');
      expect(byOpenssh.status).toBe(255);
      expect(byOpenssh.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED/);

      const error = await freshConnectError(dir, broker.settings, lab.id);
      expect(error).toBeInstanceOf(HostConnectionError);
      expect((error as HostConnectionError).code).toBe('HOST_CONNECTION');
      expect((error as Error).message).toContain(lab.name);
      expect((error as Error).message).toContain(pinned.hostKey!);

      const main = resolve('lib/cli/main.ts');
      const outcome = join(dir, 'ssh-outcome.json');
      const cli = await run(process.execPath, ['--import', 'tsx', main, '--output-file', outcome, 'ssh', lab.name, 'true'], {
        env: { ...process.env, BROKER_DIRECTORY: dir, CI: '' },
        timeout: 60_000,
        killSignal: 'SIGKILL',
      }).then(
        (r) => ({ status: 0, ...r }),
        (e: { code?: number; stdout?: string; stderr?: string }) => ({ status: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
      );
      expect(cli.status).toBe(5);
      expect(cli.stderr).toContain(lab.name);
      expect(JSON.parse(await readFile(outcome, 'utf8'))).toMatchObject({ error: { code: 'HOST_CONNECTION' } });
      // The pin was not replaced by the key the host now shows.
      expect(((await broker.find(lab.id))!.connection as SshConnection).hostPublicKey).toBe(pinned.hostPublicKey);
    } finally {
      await broker.checkin(lab);
    }
  });

  it('writes a valid inventory even after a provider hands over a bad key line (it is refused, nothing is written)', async () => {
    const bad = defineProvider({
      name: 'bad-key',
      description: 'test: reports a malformed host key',
      args: z.strictObject({}),
      load: async () =>
        ({
          async checkout() {
            return {
              hostname: 'x',
              connection: { kind: 'ssh', host: '127.0.0.1', port: 1, username: 'u', hostPublicKey: 'ssh-ed25519 AAAA\n[evil]:22 ssh-ed25519 AAAA' },
            };
          },
          async release() {},
        }) as unknown as ProviderImplementation,
    });
    const b = new Broker({ directory: dir, providers: [bad], settings: { logLevel: 'silent' } });
    await expect(b.checkout({ provider: 'bad-key', waitForSsh: false })).rejects.toThrow(/hostPublicKey/);
    await b.close();
    expect((await readFile(knownHosts, 'utf8')).includes('evil')).toBe(false);
    expect((await broker.inventory()).some((r) => r.provider === 'bad-key')).toBe(false);
  });
});

const probe = await probeEngine([SSHD_IMAGE]);
const engineSkip = skipReason(probe);

describe.skipIf(Boolean(engineSkip))(
  `container hosts over SSH: the host key hostbroker made${engineSkip ? ` (skipped: ${engineSkip})` : ''}`,
  { timeout: 180_000 },
  () => {
    let dir: string;
    let broker: Broker;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'hb-kh-ct-'));
      broker = new Broker({ directory: dir, settings: { logLevel: 'silent' } });
    });
    afterAll(async () => {
      await broker?.checkin({ all: true }).catch(() => undefined);
      await broker?.close();
      if (probe.engine && broker) await removeBrokerContainers(probe.engine, broker.brokerId);
      await rm(dir, { recursive: true, force: true });
    });

    it('is pinned from creation (record, label, known_hosts), is what sshd serves, and survives sync', async () => {
      const host = await broker.checkout({ provider: 'container', image: SSHD_IMAGE, ssh: true, waitForSsh: false });
      const c = host.record.connection as SshConnection;
      expect(c.hostPublicKey).toMatch(/^ssh-ed25519 AAAA/);
      const [info] = await containersOfBroker(probe.engine!, broker.brokerId);
      expect(info!.Labels[LABELS.hostKey]).toBe(c.hostPublicKey);
      expect(await entries(join(dir, 'known_hosts'))).toEqual([`[${c.host}]:${c.port} ${c.hostPublicKey}`]);
      // OpenSSH is the first client: strict checking against the file, no prompt.
      const r = await openssh(c, join(dir, 'known_hosts'), 'echo ok');
      expect(r, r.stderr).toMatchObject({ status: 0, stdout: 'ok\n' });
      await broker.sync('container');
      expect(((await broker.find(host.id))!.connection as SshConnection).hostPublicKey).toBe(c.hostPublicKey);
      await broker.checkin(host);
      expect(await entries(join(dir, 'known_hosts'))).toEqual([]);
    });

    it('an image that replaces the host key fails the checkout (HOST_CONNECTION) and leaves nothing behind', async () => {
      const regenerate =
        'rm -f /etc/ssh/ssh_host_*; mkdir -p /run/sshd /root/.ssh; printf "%s\\n" "$HOSTBROKER_AUTHORIZED_KEY" > /root/.ssh/authorized_keys; ssh-keygen -A >/dev/null; exec /usr/sbin/sshd -D -e';
      const error = await broker.checkout({ provider: 'container', image: SSHD_IMAGE, ssh: true, command: regenerate }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HostConnectionError);
      expect((error as HostConnectionError).code).toBe('HOST_CONNECTION');
      expect((error as Error).message).toMatch(/host key of container-\w+ .*changed/);
      expect(await broker.inventory()).toEqual([]);
      expect(await containersOfBroker(probe.engine!, broker.brokerId)).toEqual([]);
    });
  },
);

declare module '../lib/registry.js' {
  interface ProviderArgs {
    'sshd-sync': { name?: string };
    'bad-key': { name?: string };
  }
}
