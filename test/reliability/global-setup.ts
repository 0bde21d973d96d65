/**
 * vitest globalSetup for the reliability suite: starts an empty figures file before the run and
 * prints the figures every reliability test appended (trials, processes, operations, faults)
 * after it.
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function setup(): () => void {
  // One file per run (workers inherit the variable), so parallel runs do not mix their figures.
  const SUMMARY_FILE = join(tmpdir(), `hostbroker-reliability-${process.pid}.jsonl`);
  process.env.HB_RELIABILITY_SUMMARY = SUMMARY_FILE;
  rmSync(SUMMARY_FILE, { force: true });
  return () => {
    let text = '';
    try {
      text = readFileSync(SUMMARY_FILE, 'utf8');
    } catch {
      return; // no reliability test ran
    }
    const rows = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const lines = rows.map(
      ({ suite, ...figures }) =>
        `  ${String(suite).padEnd(18)} ${Object.entries(figures)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')}`,
    );
    process.stdout.write(`\nhostbroker reliability figures (${SUMMARY_FILE}):\n${lines.join('\n')}\n`);
    rmSync(SUMMARY_FILE, { force: true });
  };
}
