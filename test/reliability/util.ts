/**
 * Helpers for the reliability suite: temp broker directories, what the local provider really
 * holds (server processes in /proc, host folders), the engine's containers, and the summary of
 * figures printed at the end of the run.
 */
import { execFile } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

export const run = promisify(execFile);
export const ROOT = resolve(import.meta.dirname, '..', '..');
/**
 * argv that runs a TypeScript file in ONE node process (the tsx CLI would start a second one,
 * and SIGKILL of the first would leave the real worker running).
 */
export function nodeTs(file: string, ...args: string[]): [string, string[]] {
  return [process.execPath, ['--import', pathToFileURL(join(ROOT, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs')).href, file, ...args]];
}

/** File each reliability test appends its figures to; the global teardown prints it. */
export const SUMMARY_FILE = process.env.HB_RELIABILITY_SUMMARY ?? join(tmpdir(), 'hostbroker-reliability-summary.jsonl');

/** Appends one line of figures for the end-of-run summary. */
export function reportFigures(suite: string, figures: Record<string, number | string>): void {
  mkdirSync(resolve(SUMMARY_FILE, '..'), { recursive: true });
  appendFileSync(SUMMARY_FILE, `${JSON.stringify({ suite, ...figures })}\n`);
}

export async function tempBrokerDir(prefix = 'hb-rel-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Pids of live local-provider servers whose command line points into `dir`. */
export async function localServers(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    const argv = cmd.split('\0');
    // A local host's server is started with its config file, <dir>/local-hosts/<id>/server.json,
    // whatever runs it (built server.js, a bundle of server.ts, or tsx).
    if (argv.some((a) => a.startsWith(`${dir}/`) && a.endsWith('/server.json'))) {
      // A zombie has an empty cmdline, so anything here is running.
      out.push(Number(e));
    }
  }
  return out;
}

/** Host folders the local provider holds in a broker directory. */
export async function localFolders(dir: string): Promise<string[]> {
  return readdir(join(dir, 'local-hosts')).catch(() => []);
}

/** Whether `CI=true` (real components must be there: never skip). */
export const inCI = process.env.CI === 'true';
