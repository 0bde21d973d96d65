/**
 * What the dashboard's JSON API answers: host rows (filtered in the seed syntax, by owner and a
 * search text, sorted and paged), one host in detail with the commands that reach it, and
 * deployments with their members and groups. Everything goes through `redact` first.
 * @module
 */
import { command } from '../../hosts/quote.js';
import { UserInputError } from '../errors.js';
import { compileFilter } from '../filter.js';
import { knownHostsPath } from '../known-hosts.js';
import type { DeploymentRecord, HostRecord } from '../records.js';
import { redact } from '../secrets.js';

/** One row of the host list. */
export interface HostRow {
  id: string;
  name: string;
  hostname: string;
  /** `user@host:port` for SSH hosts, else the hostname. */
  address: string;
  provider: string;
  instance: string;
  state: HostRecord['state'];
  owner: string;
  worker?: string;
  leaseExpires?: string;
  kept?: { reason: string; at: string };
  pooled?: { at: string };
  deployment?: string;
  createdAt: string;
  lastError?: string;
}

/** A host list request (the query string of `GET /api/hosts`). */
export interface HostQuery {
  filter?: string;
  owner?: string;
  q?: string;
  sort?: string;
  order?: 'asc' | 'desc';
  offset?: number;
  limit?: number;
}

/** Most rows one page holds. */
export const MAX_PAGE = 1000;

const SORT_KEYS: Record<string, (r: HostRow) => string> = {
  name: (r) => r.name,
  address: (r) => r.address,
  provider: (r) => `${r.provider}::${r.instance}`,
  state: (r) => r.state,
  owner: (r) => r.owner,
  lease: (r) => r.leaseExpires ?? '\uffff',
  created: (r) => r.createdAt,
  deployment: (r) => r.deployment ?? '',
};

/** Rows already made, per record object (a changed record is a new object). */
const rowCache = new WeakMap<HostRecord, HostRow>();

/** The row of a record. */
export function hostRow(r: HostRecord, deploymentNames?: ReadonlyMap<string, string>): HostRow {
  const cached = rowCache.get(r);
  if (cached && (!r.deployment || cached.deployment === (deploymentNames?.get(r.deployment) ?? r.deployment))) return cached;
  const c = r.connection;
  const row: HostRow = {
    id: r.id,
    name: r.name,
    hostname: r.hostname,
    address: c?.kind === 'ssh' ? `${c.username}@${c.host}:${c.port}` : r.hostname,
    provider: r.provider,
    instance: r.instance,
    state: r.state,
    owner: r.owner,
    createdAt: r.createdAt,
  };
  if (r.worker) row.worker = r.worker;
  if (r.leaseExpires) row.leaseExpires = r.leaseExpires;
  if (r.kept) row.kept = r.kept;
  if (r.pooled) row.pooled = { at: r.pooled.at };
  if (r.deployment) row.deployment = deploymentNames?.get(r.deployment) ?? r.deployment;
  if (r.lastError) row.lastError = r.lastError;
  const clean = redact(row);
  rowCache.set(r, clean);
  return clean;
}

/** Parses the query string of a host list request; bad values are UserInputErrors. */
export function parseHostQuery(params: URLSearchParams): HostQuery {
  const q: HostQuery = {};
  for (const key of ['filter', 'owner', 'q'] as const) {
    const v = params.get(key)?.trim();
    if (v) q[key] = v;
  }
  const sort = params.get('sort');
  if (sort) {
    if (!(sort in SORT_KEYS)) throw new UserInputError(`sort by one of ${Object.keys(SORT_KEYS).join(', ')}, not ${JSON.stringify(sort)}.`);
    q.sort = sort;
  }
  const order = params.get('order');
  if (order) {
    if (order !== 'asc' && order !== 'desc') throw new UserInputError(`order is asc or desc, not ${JSON.stringify(order)}.`);
    q.order = order;
  }
  for (const key of ['offset', 'limit'] as const) {
    const v = params.get(key);
    if (v === null) continue;
    if (!/^\d+$/.test(v)) throw new UserInputError(`${key} is a whole number, not ${JSON.stringify(v)}.`);
    q[key] = Number(v);
  }
  if (q.limit !== undefined && (q.limit < 1 || q.limit > MAX_PAGE)) throw new UserInputError(`limit is 1 to ${MAX_PAGE}.`);
  return q;
}

/** What `GET /api/hosts` answers. */
export interface HostPage {
  total: number;
  matched: number;
  offset: number;
  hosts: HostRow[];
  /** Every kept host (they are shown whatever the filter: these are the ones people forget). */
  kept: HostRow[];
  owners: string[];
  counts: { kept: number; pooled: number; states: Record<string, number> };
}

/** Filters, searches, sorts and pages the records. */
export function hostPage(records: readonly HostRecord[], deployments: readonly DeploymentRecord[], query: HostQuery): HostPage {
  const names = new Map(deployments.map((d) => [d.id, d.name]));
  let selected = query.filter ? records.filter(compileFilter<HostRecord>(query.filter)) : [...records];
  if (query.owner) selected = selected.filter((r) => r.owner === query.owner);
  let rows = selected.map((r) => hostRow(r, names));
  if (query.q) {
    const needle = query.q.toLowerCase();
    rows = rows.filter((r) =>
      [r.name, r.hostname, r.address, r.id, r.owner, r.provider, r.instance, r.state, r.deployment, r.kept?.reason].some((v) =>
        v?.toLowerCase().includes(needle),
      ),
    );
  }
  const key = SORT_KEYS[query.sort ?? 'name']!;
  const sign = query.order === 'desc' ? -1 : 1;
  rows.sort((a, b) => sign * (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : a.id < b.id ? -1 : 1));
  const offset = query.offset ?? 0;
  const states: Record<string, number> = {};
  for (const r of records) states[r.state] = (states[r.state] ?? 0) + 1;
  const kept = records.filter((r) => r.kept);
  return {
    total: records.length,
    matched: rows.length,
    offset,
    hosts: rows.slice(offset, offset + (query.limit ?? 100)),
    kept: kept.map((r) => hostRow(r, names)).sort((a, b) => (a.kept!.at < b.kept!.at ? 1 : -1)),
    owners: [...new Set(records.map((r) => r.owner))].sort(),
    counts: { kept: kept.length, pooled: records.filter((r) => r.pooled).length, states },
  };
}

/** What `GET /api/hosts/:id` answers. */
export interface HostDetail {
  host: HostRow;
  /** The whole record, secrets removed. */
  record: HostRecord;
  recipe: HostRecord['recipe'];
  /** Commands that reach the host from this machine. */
  commands: { label: string; command: string }[];
  deployment?: { id: string; name: string; groups: string[]; role?: string };
}

/** One host in detail. `cliKey` is what `hostbroker ssh` should be given (the name when unique). */
export function hostDetail(
  record: HostRecord,
  deployments: readonly DeploymentRecord[],
  directory: string,
  cliKey: string,
  defaultDirectory: boolean,
): HostDetail {
  const clean = redact(record);
  const dir = defaultDirectory ? [] : ['--directory', directory];
  const commands = [{ label: 'hostbroker ssh', command: command('hostbroker', 'ssh', ...dir, cliKey) }];
  const c = clean.connection;
  if (c?.kind === 'ssh') {
    const key = c.privateKeyPath ? ['-i', c.privateKeyPath] : [];
    const port = c.port !== 22 ? ['-p', c.port] : [];
    const pin = ['-o', `UserKnownHostsFile=${knownHostsPath(directory)}`, '-o', 'StrictHostKeyChecking=yes'];
    commands.push({ label: 'ssh', command: command('ssh', ...key, ...port, ...pin, `${c.username}@${c.host}`) });
  }
  const names = new Map(deployments.map((d) => [d.id, d.name]));
  const detail: HostDetail = { host: hostRow(record, names), record: clean, recipe: clean.recipe, commands };
  const d = record.deployment ? deployments.find((x) => x.id === record.deployment) : undefined;
  if (d) {
    const member = Object.values(d.hosts).find((m) => m.recordId === record.id);
    detail.deployment = { id: d.id, name: d.name, groups: stringList(member?.groups) };
    if (typeof member?.role === 'string') detail.deployment.role = member.role;
  }
  return detail;
}

/** One deployment: its members (with their hosts' state) and groups. */
export interface DeploymentView {
  id: string;
  name: string;
  owner: string;
  createdAt: string;
  members: { fqdn: string; name: string; role?: string; groups: string[]; recordId?: string; state?: string }[];
  groups: Record<string, string[]>;
}

/** Every deployment, newest first. */
export function deploymentViews(deployments: readonly DeploymentRecord[], hosts: ReadonlyMap<string, HostRecord>): DeploymentView[] {
  return deployments
    .map((d) => {
      const members = Object.entries(d.hosts).map(([fqdn, m]) => {
        const recordId = typeof m.recordId === 'string' ? m.recordId : undefined;
        const out: DeploymentView['members'][number] = { fqdn, name: typeof m.name === 'string' ? m.name : fqdn, groups: stringList(m.groups) };
        if (typeof m.role === 'string') out.role = m.role;
        if (recordId) {
          out.recordId = recordId;
          out.state = hosts.get(recordId)?.state ?? 'gone';
        }
        return out;
      });
      const groups: Record<string, string[]> = {};
      for (const m of members) for (const g of m.groups) (groups[g] ??= []).push(m.fqdn);
      return redact({ id: d.id, name: d.name, owner: d.owner, createdAt: d.createdAt, members, groups });
    })
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}
