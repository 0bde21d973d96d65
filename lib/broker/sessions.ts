/**
 * Sessions: one per record, over SSH or the provider's own transport, shared by every Host
 * object of that record; host keys recorded on first use.
 * @module
 */
import { Session } from '../../hosts/session.js';
import { SshTransport } from '../../hosts/ssh-transport.js';
import { HostConnectionError, asError } from '../errors.js';
import { knownHostsPath, pinHostKey, pinJumpHostKey, renderKnownHosts, syncKnownHosts as writeKnownHosts } from '../known-hosts.js';
import type { HostRecord } from '../records.js';
import { toMs } from '../settings.js';
import type { BrokerCore } from './core.js';

const NO_KNOWN_HOSTS = renderKnownHosts([]);

/** The session for a record: SSH, or the provider's own transport (made on first use). */
export function sessionFor(core: BrokerCore, record: HostRecord): Session {
  const existing = core.sessions.get(record.id);
  if (existing) return existing;
  const connection = record.connection;
  if (!connection)
    throw new HostConnectionError(`${record.name} has no connection details yet (state ${record.state}); wait for its checkout to finish or run sync.`);
  let session: Session;
  if (connection.kind === 'ssh') {
    const ssh = core.settings.ssh;
    session = new Session(
      new SshTransport({
        connection,
        connectTimeout: toMs(ssh.connectTimeout),
        readyTimeout: toMs(ssh.readyTimeout),
        keepaliveInterval: toMs(ssh.keepaliveInterval),
        keepaliveCountMax: ssh.keepaliveCountMax,
        channelsPerConnection: ssh.channelsPerConnection,
        maxConnections: ssh.maxConnections,
        bulkStreams: ssh.bulkStreams,
        hostKeyPolicy: ssh.hostKeyPolicy,
        ...(ssh.privateKeyPath ? { defaultPrivateKeyPath: ssh.privateKeyPath } : {}),
        ...(ssh.passwordEnv ? { defaultPasswordEnv: ssh.passwordEnv } : {}),
        ...(ssh.passphraseEnv ? { defaultPassphraseEnv: ssh.passphraseEnv } : {}),
        ...(ssh.agent !== undefined ? { defaultAgent: ssh.agent } : {}),
        label: `${record.name} (${connection.username}@${connection.host}:${connection.port})`,
        onHostKey: (fp, publicKey) => recordHostKey(core, record.id, fp, publicKey),
        onJumpHostKey: (index, fp, publicKey) => recordJumpHostKey(core, record.id, index, fp, publicKey),
      }),
    );
  } else {
    const runtime = core.runtime(record.provider);
    session = new Session({
      label: record.name,
      connect: async () => {
        const impl = await runtime.require('transport', `${record.name} cannot be reached`);
        return impl.transport(record, runtime.context(record.instance));
      },
    });
  }
  core.sessions.set(record.id, session);
  return session;
}

/** Pins the key a host showed on its first connection (fingerprint, and the whole key when it matches). */
async function recordHostKey(core: BrokerCore, id: string, fingerprint: string, publicKey: string | undefined): Promise<void> {
  await core.store.patch(id, (current) => {
    const next = structuredClone(current);
    return pinHostKey(next, fingerprint, publicKey) ? { connection: next.connection } : undefined;
  });
  await syncKnownHosts(core);
}

/** Pins the key a jump host of the record showed on its first connection through it. */
async function recordJumpHostKey(core: BrokerCore, id: string, index: number, fingerprint: string, publicKey: string): Promise<void> {
  await core.store.patch(id, (current) => {
    const next = structuredClone(current);
    return pinJumpHostKey(next, index, fingerprint, publicKey) ? { connection: next.connection } : undefined;
  });
  await syncKnownHosts(core);
}

/**
 * Rewrites `<directory>/known_hosts` (what OpenSSH clients and Ansible check hosts against) from
 * the inventory. A failure is a warning: no checkout fails for it, the next change writes it again.
 * Given the records a change touched (as they were before and after it), nothing is read when
 * none of them has a line in the file: the file is the same with or without that change.
 */
export async function syncKnownHosts(core: BrokerCore, touched?: readonly (HostRecord | undefined)[]): Promise<void> {
  if (touched && renderKnownHosts(touched.filter((r) => r !== undefined)) === NO_KNOWN_HOSTS) return;
  await writeKnownHosts(core.directory, () => core.store.list()).catch((error: unknown) =>
    core.logger.warn(`could not update ${knownHostsPath(core.directory)}; OpenSSH clients may not know the newest hosts until the next change`, {
      error: asError(error).message,
    }),
  );
}
