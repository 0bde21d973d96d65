/**
 * Human output of the CLI: aligned tables and YAML. Everything printed goes through `scrub`.
 * @module
 */
import { lazyRequire } from '../lazy-require.js';
import type { HostRecord } from '../records.js';

const yamlModule = lazyRequire<typeof import('yaml')>('yaml');

/** Left-aligned columns with a header row; empty cells show `-`. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly (string | number | undefined)[]>): string {
  const cells = [headers.map(String), ...rows.map((r) => r.map((c) => (c === undefined || c === '' ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return `${cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}

/** How long until an ISO time, e.g. `3h12m`, or `expired`. */
export function until(iso: string | undefined, now = Date.now()): string | undefined {
  if (!iso) return undefined;
  const ms = Date.parse(iso) - now;
  if (Number.isNaN(ms)) return iso;
  if (ms <= 0) return 'expired';
  const m = Math.floor(ms / 60_000);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h${String(m % 60).padStart(2, '0')}m` : `${Math.floor(h / 24)}d${h % 24}h`;
}

/**
 * Hosts as a table; `#` is the inventory index `checkin 0` and friends accept (`false`: no
 * index column, for hosts just made).
 */
export function hostTable(records: readonly HostRecord[], indexes: readonly number[] | false): string {
  if (!records.length) return 'no hosts\n';
  const rows = records.map((r) => [
    r.name,
    r.connection?.kind === 'ssh' ? `${r.connection.username}@${r.connection.host}:${r.connection.port}` : r.hostname,
    r.instance && r.instance !== 'default' ? `${r.provider}::${r.instance}` : r.provider,
    r.kept ? `${r.state} (kept)` : r.pooled ? `${r.state} (pooled)` : r.state,
    r.owner,
    until(r.leaseExpires),
    r.deployment,
    r.id,
  ]);
  const headers = ['NAME', 'ADDRESS', 'PROVIDER', 'STATE', 'OWNER', 'LEASE', 'DEPLOYMENT', 'ID'];
  if (indexes === false) return table(headers, rows);
  return table(
    ['#', ...headers],
    rows.map((row, i) => [indexes[i] ?? i, ...row]),
  );
}

/** YAML for `--details` and results without a table. */
export function yaml(value: unknown): string {
  return yamlModule().stringify(value, { lineWidth: 0 });
}
