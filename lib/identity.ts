/**
 * Identities: the broker directory's id, the owner, record ids and host names.
 * @module
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';

/** The stable id of a broker directory (created on first use, kept in `broker-id`). */
export function brokerIdOf(directory: string): string {
  const file = join(directory, 'broker-id');
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (id) return id;
  } catch {
    // first use: create it below
  }
  mkdirSync(directory, { recursive: true });
  const id = randomUUID();
  try {
    writeFileSync(file, `${id}\n`, { flag: 'wx', mode: 0o644 });
    return id;
  } catch {
    // Another process created it first: use theirs.
    return readFileSync(file, 'utf8').trim();
  }
}

/** The OS user, as the default owner. */
export function defaultOwner(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}

/** This machine's name, recorded with the checkout process id. */
export function machineName(): string {
  return hostname();
}

/** A new record id: `hb-` and 12 hex digits. */
export function newRecordId(): string {
  return `hb-${randomBytes(6).toString('hex')}`;
}

/** A short random suffix for host names. */
export function shortId(): string {
  return randomBytes(3).toString('hex');
}

/** Whether a process id is alive on this machine. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
