/**
 * What the dashboard's buttons do: extend, check in, keep, unkeep and duplicate one host, each
 * through the Broker's public API, each logged (and appended to `<directory>/dashboard-audit.log`)
 * with who did it.
 * @module
 */
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Broker } from '../broker/index.js';
import { asError, UserInputError } from '../errors.js';
import type { HostRecord } from '../records.js';
import { scrub } from '../secrets.js';
import { type HostRow, hostRow } from './views.js';

/** The actions, by the last segment of `POST /api/hosts/:id/<action>`. */
export const ACTIONS = ['extend', 'checkin', 'keep', 'unkeep', 'duplicate'] as const;
export type ActionName = (typeof ACTIONS)[number];

/** Most copies one duplicate click may make. */
const MAX_COPIES = 10;

/** What an action answers: the host after it (absent when checked in) and hosts it made. */
export interface ActionResult {
  action: ActionName;
  host?: HostRow;
  created?: HostRow[];
}

function text(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new UserInputError(`\`${key}\` must be a string.`);
  return v.trim();
}

/** Runs one action on one record for `who`. */
export async function runAction(broker: Broker, record: HostRecord, action: ActionName, body: Record<string, unknown>, who: string): Promise<ActionResult> {
  const started = Date.now();
  const entry = { at: new Date().toISOString(), who, action, host: record.name, id: record.id };
  try {
    const result = await perform(broker, record, action, body);
    await audit(broker, { ...entry, ok: true, ms: Date.now() - started, ...(result.created ? { created: result.created.map((r) => r.name) } : {}) });
    broker.logger.info(`dashboard: ${who} ran ${action} on ${record.name}`, { id: record.id, who });
    return result;
  } catch (error) {
    await audit(broker, { ...entry, ok: false, error: asError(error).message });
    broker.logger.warn(`dashboard: ${who} ran ${action} on ${record.name} and it failed: ${asError(error).message}`, { id: record.id, who });
    throw error;
  }
}

async function perform(broker: Broker, record: HostRecord, action: ActionName, body: Record<string, unknown>): Promise<ActionResult> {
  switch (action) {
    case 'extend': {
      const lease = text(body, 'lease');
      if (lease !== undefined && !/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/.test(lease))
        throw new UserInputError(`lease: a duration such as 90s, 30m, 4h or 2d, not ${JSON.stringify(lease)}.`);
      await broker.extend(record, lease !== undefined ? { lease } : {});
      return withHost(broker, record, action);
    }
    case 'checkin':
      await broker.checkin(record);
      return { action };
    case 'keep': {
      const reason = text(body, 'reason');
      if (!reason) throw new UserInputError('say why the host is kept (`reason`), so the next person knows.');
      await broker.keep(record, reason);
      return withHost(broker, record, action);
    }
    case 'unkeep':
      await broker.unkeep(record);
      return withHost(broker, record, action);
    case 'duplicate': {
      const count = body.count ?? 1;
      if (!Number.isInteger(count) || (count as number) < 1 || (count as number) > MAX_COPIES)
        throw new UserInputError(`count: a whole number from 1 to ${MAX_COPIES}.`);
      const group = await broker.duplicate(record, { count: count as number });
      return { action, created: group.map((h) => hostRow(h.record)) };
    }
  }
}

async function withHost(broker: Broker, record: HostRecord, action: ActionName): Promise<ActionResult> {
  const host = await broker.find(record.id);
  return host ? { action, host: hostRow(host) } : { action };
}

/** One JSON line per action; never a secret (messages are scrubbed). */
async function audit(broker: Broker, entry: Record<string, unknown>): Promise<void> {
  await appendFile(join(broker.directory, 'dashboard-audit.log'), `${scrub(JSON.stringify(entry))}\n`, { mode: 0o600 }).catch((error: unknown) =>
    broker.logger.warn(`dashboard: cannot write the audit log: ${asError(error).message}`),
  );
}
