/**
 * `<broker directory>/known_hosts`: the pinned host key of every SSH host in the inventory, in
 * OpenSSH's format, so `ssh`, `scp`, `rsync` and Ansible check hosts with
 * `StrictHostKeyChecking yes`. The records are the truth; the file is rewritten from them
 * (atomically, mode 0600) whenever they change.
 * @module
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeAtomic } from './atomic-file.js';
import type { Connection, HostRecord } from './records.js';

/** File name of the known_hosts file in the broker directory. */
export const KNOWN_HOSTS_FILE = 'known_hosts';

/** Where the known_hosts file of a broker directory is. */
export function knownHostsPath(directory: string): string {
  return join(resolve(directory), KNOWN_HOSTS_FILE);
}

/** OpenSSH-style fingerprint of a raw host key: `SHA256:base64`. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** The one-line form (`ssh-ed25519 AAAA...`) of a raw host key blob (its type is its first field). */
export function publicKeyLine(blob: Buffer): string {
  const length = blob.length >= 4 ? blob.readUInt32BE(0) : 0;
  const type = blob.subarray(4, 4 + length).toString('latin1');
  return `${type} ${blob.toString('base64')}`;
}

/** `ssh-ed25519 AAAA... comment` → `ssh-ed25519 AAAA...` (what records hold). */
export function stripComment(line: string): string {
  return line.trim().split(/\s+/).slice(0, 2).join(' ');
}

/** Fingerprint of a one-line public key. */
export function lineFingerprint(line: string): string {
  return fingerprint(Buffer.from(stripComment(line).split(' ')[1] ?? '', 'base64'));
}

/** The connection fields that pin a key the provider knows: fingerprint and key line. */
export function pinnedKey(line: string): { hostKey: string; hostPublicKey: string } {
  return { hostKey: lineFingerprint(line), hostPublicKey: stripComment(line) };
}

/** The host pattern OpenSSH looks a host up by: `host` on port 22, `[host]:port` on any other. */
export function knownHostsPattern(host: string, port: number): string {
  const bare = host.replace(/^\[|\]$/g, '');
  return port === 22 ? bare : `[${bare}]:${port}`;
}

/** The known_hosts text for these records (SSH records with a pinned key), sorted. */
export function renderKnownHosts(records: readonly HostRecord[]): string {
  const lines = new Set<string>();
  for (const r of records) {
    const c = r.connection;
    if (c?.kind !== 'ssh') continue;
    if (c.hostPublicKey) lines.add(`${knownHostsPattern(c.host, c.port)} ${c.hostPublicKey}`);
    // Jump hosts too: `ProxyJump` in the OpenSSH config checks them against this file.
    for (const hop of c.jump ?? []) if (hop.hostPublicKey) lines.add(`${knownHostsPattern(hop.host, hop.port)} ${hop.hostPublicKey}`);
  }
  const body = [...lines].sort().join('\n');
  return `# Host keys of the hosts in this hostbroker directory; rewritten from the inventory, do not edit.\n${body}${body ? '\n' : ''}`;
}

/**
 * Records a key seen on a connection in the record (inside an inventory update): the
 * fingerprint when none is pinned, the whole key when it matches the pinned fingerprint.
 * True when something changed.
 */
export function pinHostKey(record: HostRecord | undefined, seenFingerprint: string, publicKey: string | undefined): boolean {
  const c = record?.connection;
  if (c?.kind !== 'ssh') return false;
  let changed = false;
  if (!c.hostKey) {
    c.hostKey = seenFingerprint;
    changed = true;
  }
  if (!c.hostPublicKey && publicKey && c.hostKey === seenFingerprint && lineFingerprint(publicKey) === seenFingerprint) {
    c.hostPublicKey = stripComment(publicKey);
    changed = true;
  }
  return changed;
}

/** Records the key jump host `index` of the record showed (as {@link pinHostKey}). True when something changed. */
export function pinJumpHostKey(record: HostRecord | undefined, index: number, seenFingerprint: string, publicKey: string): boolean {
  const c = record?.connection;
  const hop = c?.kind === 'ssh' ? c.jump?.[index] : undefined;
  if (!hop || hop.hostPublicKey || (hop.hostKey && hop.hostKey !== seenFingerprint) || lineFingerprint(publicKey) !== seenFingerprint) return false;
  hop.hostKey = seenFingerprint;
  hop.hostPublicKey = stripComment(publicKey);
  return true;
}

/**
 * A provider's fresh view of a connection (sync) with the key pinned before kept, when the
 * provider reports none: a rediscovered host keeps its key instead of being trusted anew.
 */
export function keepPinnedKey(discovered: Connection | undefined, existing: Connection | undefined): Connection | undefined {
  if (discovered?.kind !== 'ssh' || existing?.kind !== 'ssh' || discovered.hostKey || discovered.hostPublicKey) return discovered;
  return {
    ...discovered,
    ...(existing.hostKey ? { hostKey: existing.hostKey } : {}),
    ...(existing.hostPublicKey ? { hostPublicKey: existing.hostPublicKey } : {}),
  };
}

/**
 * Brings the file in step with the records. Lock-free across processes: after each write it
 * lists the records again and stops only when the file matches what it read, so a writer that
 * raced another with an older view puts the newer one back.
 */
async function bringInStep(directory: string, list: () => Promise<readonly HostRecord[]>): Promise<void> {
  const path = knownHostsPath(directory);
  await mkdir(resolve(directory), { recursive: true, mode: 0o700 });
  for (let i = 0; i < 5; i++) {
    const text = renderKnownHosts(await list());
    if (text === (await readFile(path, 'utf8').catch(() => undefined))) return;
    await writeAtomic(path, text);
  }
}

/** Per directory in this process: the write under way and the one queued behind it. */
const writers = new Map<string, { current?: Promise<void>; next?: Promise<void> }>();

/**
 * Rewrites `<directory>/known_hosts` from the records `list` returns. Calls while a rewrite
 * runs share one more rewrite after it (which reads the records after their change).
 */
export function syncKnownHosts(directory: string, list: () => Promise<readonly HostRecord[]>): Promise<void> {
  const key = resolve(directory);
  let writer = writers.get(key);
  if (!writer) writers.set(key, (writer = {}));
  const w = writer;
  if (w.next) return w.next;
  const start = (): Promise<void> => {
    const run: Promise<void> = bringInStep(directory, list).finally(() => {
      if (w.current === run) w.current = undefined;
      if (!w.current && !w.next) writers.delete(key);
    });
    w.current = run;
    return run;
  };
  if (!w.current) return start();
  w.next = w.current
    .catch(() => undefined)
    .then(() => {
      w.next = undefined;
      return start();
    });
  return w.next;
}
