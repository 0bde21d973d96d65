/**
 * Small helpers shared by the bench scripts: medians, timing, a plain-text table, and the
 * machine's load (benches here share a 2-core machine with other people's test runs).
 */
import { readdir, readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Milliseconds that `fn` took. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

/** `1.2 3.4 5.6` (1, 5 and 15 minute load averages). */
export function load(): string {
  return loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
}

/** Prints rows as left-aligned columns, the first row being the header. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  const line = (row: readonly string[]) =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const out = [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const row of rows.slice(1)) out.push(line(row));
  return out.join('\n');
}

/**
 * CPU milliseconds used so far by process `pid` and all its descendants, alive or reaped
 * (Linux /proc; undefined elsewhere). Assumes the usual 100 clock ticks per second.
 */
export async function treeCpuMs(pid: number): Promise<number | undefined> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return undefined;
  }
  const procs = new Map<number, { ppid: number; own: number; reaped: number }>();
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      procs.set(Number(name), { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) });
    } catch {
      // the process ended meanwhile
    }
  }
  const under = (p: number): boolean => {
    for (let q = p, depth = 0; q > 1 && depth < 32; q = procs.get(q)?.ppid ?? 0, depth++) if (q === pid) return true;
    return false;
  };
  let ticks = 0;
  for (const [p, s] of procs) if (under(p)) ticks += s.own + s.reaped;
  return ticks * 10;
}
