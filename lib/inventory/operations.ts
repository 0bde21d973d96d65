/**
 * The store operations as pure functions of the records they change, so that every store applies
 * the same rules (validation, conditions, reservations) and may apply them again when a write
 * must be retried on a newer view.
 * @module
 */
import { InventoryError, UserInputError } from '../errors.js';
import { formatIssues } from '../settings.js';
import {
  type DeploymentRecord,
  DeploymentRecord as DeploymentSchema,
  type HostRecord,
  HostRecord as HostRecordSchema,
  type InventoryFile,
} from '../records.js';
import type { RecordPatch, Reservation, WriteCondition } from './store.js';

/** Validates one record, with a message that names the field. */
export function validateRecord(record: unknown): HostRecord {
  const r = HostRecordSchema.safeParse(record);
  if (!r.success) throw new UserInputError(`invalid inventory record: ${formatIssues(r.error)}`);
  return r.data;
}

/** Validates one deployment record, with a message that names the field. */
export function validateDeployment(deployment: unknown): DeploymentRecord {
  const r = DeploymentSchema.safeParse(deployment);
  if (!r.success) throw new UserInputError(`invalid deployment record: ${formatIssues(r.error)}`);
  return r.data;
}

/** Whether a record meets a write condition. */
export function meets(record: HostRecord, when: WriteCondition | undefined): boolean {
  if (when?.state === undefined) return true;
  return typeof when.state === 'string' ? record.state === when.state : when.state.includes(record.state);
}

/**
 * The record after a patch, validated; undefined when the patch changes nothing. The id never
 * changes, and a field set to `undefined` is removed.
 */
export function patched(current: HostRecord, change: RecordPatch): HostRecord | undefined {
  const fields = typeof change === 'function' ? change(structuredClone(current)) : change;
  if (fields === undefined) return undefined;
  return validateRecord(JSON.parse(JSON.stringify({ ...current, ...fields, id: current.id })));
}

/** Every claim held by these records, in record order. */
export function reservationsOf(hosts: readonly HostRecord[], pool?: string): Reservation[] {
  return hosts.flatMap((h) => (h.reserved && (pool === undefined || h.reserved.pool === pool) ? [{ ...h.reserved, recordId: h.id }] : []));
}

/** Refuses records that would hold one resource twice (an InventoryError naming both). */
export function checkReservations(hosts: readonly HostRecord[]): void {
  const holder = new Map<string, string>();
  for (const r of reservationsOf(hosts)) {
    const key = JSON.stringify([r.pool, r.resource]);
    const other = holder.get(key);
    if (other !== undefined) {
      throw new InventoryError(`refusing to give ${r.resource} of pool ${r.pool} to ${r.recordId}: ${other} holds it; nothing was changed.`);
    }
    holder.set(key, r.recordId);
  }
}

/** Adds new records (all or none); an InventoryError when an id is taken. */
export function addRecords(data: InventoryFile, records: readonly HostRecord[]): void {
  const valid = records.map(validateRecord);
  const ids = new Set(data.hosts.map((h) => h.id));
  for (const r of valid) {
    if (ids.has(r.id)) throw new InventoryError(`a record with id ${r.id} is already in the inventory; nothing was added.`);
    ids.add(r.id);
  }
  data.hosts.push(...valid);
}

/** Patches one record in place; the new record, or undefined when it is gone or `when` fails. */
export function patchRecord(data: InventoryFile, id: string, change: RecordPatch, when?: WriteCondition): HostRecord | undefined {
  const i = data.hosts.findIndex((h) => h.id === id);
  const current = data.hosts[i];
  if (!current || !meets(current, when)) return undefined;
  const next = patched(current, change);
  if (next) data.hosts[i] = next;
  return structuredClone(next ?? current);
}

/** Removes the records that are there (and meet `when`); their ids. */
export function removeRecords(data: InventoryFile, ids: readonly string[], when?: WriteCondition): string[] {
  const wanted = new Set(ids);
  const removed = data.hosts.filter((h) => wanted.has(h.id) && meets(h, when)).map((h) => h.id);
  const gone = new Set(removed);
  data.hosts = data.hosts.filter((h) => !gone.has(h.id));
  return removed;
}

/**
 * Gives `recordId` the first candidate no other record holds in `pool`; undefined when all are
 * held. A record holds one resource at a time: a new claim replaces its old one.
 */
export function reserveFor(data: InventoryFile, recordId: string, pool: string, candidates: readonly string[]): string | undefined {
  const mine = data.hosts.find((h) => h.id === recordId);
  if (!mine) throw new InventoryError(`the record ${recordId} is not in the inventory (it was checked in meanwhile); nothing was reserved.`);
  const held = new Set(reservationsOf(data.hosts, pool).flatMap((r) => (r.recordId === recordId ? [] : [r.resource])));
  const free = candidates.find((c) => !held.has(c));
  if (free !== undefined) mine.reserved = { pool, resource: free };
  return free;
}

/** Records or replaces a deployment. */
export function putDeploymentIn(data: InventoryFile, deployment: DeploymentRecord): void {
  const valid = validateDeployment(deployment);
  data.deployments = [...data.deployments.filter((d) => d.id !== valid.id), valid];
}

/** Removes a deployment record; whether it was there. */
export function removeDeploymentFrom(data: InventoryFile, id: string): boolean {
  const before = data.deployments.length;
  data.deployments = data.deployments.filter((d) => d.id !== id);
  return data.deployments.length < before;
}
