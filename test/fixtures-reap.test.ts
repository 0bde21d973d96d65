/**
 * The global-setup reaper: a test worker killed with SIGKILL after checking hosts out leaves
 * them behind; `reapLeftovers` checks them in (kept hosts and live workers' hosts stay), and
 * the local provider's server processes and folders are really gone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { Broker } from '../lib/broker/index.js';
import { globalSetup, reapLeftovers, type ReapSummary } from '../lib/runners/core.js';
import { localFolders, localServers, nodeTs, ROOT, tempBrokerDir } from './reliability/util.js';

const WORKER = join(ROOT, 'test', 'reliability', 'children', 'fixture-worker.ts');

function startWorker(dir: string, count: number, keep: boolean): Promise<{ child: ChildProcess; ids: string[] }> {
  const [cmd, argv] = nodeTs(WORKER, dir, String(count), keep ? '1' : '0');
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += String(d);
      const m = /ready (.*)\n/.exec(out);
      if (m) resolve({ child, ids: JSON.parse(m[1]!) as string[] });
    });
    child.on('exit', (code) => reject(new Error(`worker exited early (${code})`)));
  });
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) {
    const b = new Broker({ directory: d });
    await b.checkin({ all: true }).catch(() => undefined);
    await rm(d, { recursive: true, force: true });
  }
});

it('checks in what a killed worker left, leaves kept hosts and a live worker alone', async () => {
  const dir = await tempBrokerDir('hb-reap-');
  dirs.push(dir);
  const dead = await startWorker(dir, 3, true);
  const live = await startWorker(dir, 1, false);
  await kill(dead.child);
  try {
    const reports: ReapSummary[] = [];
    const summary = await reapLeftovers({ broker: { directory: dir }, report: (s) => reports.push(s) });
    expect(summary.checkedIn.map((r) => r.id).sort()).toEqual(dead.ids.slice(1).sort());
    expect(reports).toEqual([summary]);
    const left = await new Broker({ directory: dir }).inventory();
    expect(left.map((r) => r.id).sort()).toEqual([dead.ids[0]!, live.ids[0]!].sort());
    expect(left.find((r) => r.id === dead.ids[0])!.kept?.reason).toBe('test failed: kept by the worker');
    // Checked with the provider itself: two servers and two folders remain.
    expect(await localServers(dir)).toHaveLength(2);
    expect((await localFolders(dir)).sort()).toEqual([dead.ids[0]!, live.ids[0]!].sort());
    // A second run finds nothing more to do.
    const again = await reapLeftovers({ broker: { directory: dir }, report: () => undefined });
    expect(again.checkedIn).toEqual([]);
  } finally {
    await kill(live.child);
  }
  // Once the live worker is killed too, the global-setup function cleans up after it.
  await globalSetup({ broker: { directory: dir }, report: () => undefined })();
  const left = await new Broker({ directory: dir }).inventory();
  expect(left.map((r) => r.id)).toEqual([dead.ids[0]]);
  expect(await localServers(dir)).toHaveLength(1);
});
