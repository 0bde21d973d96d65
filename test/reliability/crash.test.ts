/**
 * Crash: a process checking out 5 hosts is killed with SIGKILL at a random moment, 20 times per
 * provider. Afterwards `checkin({ all: true })` and `reap()` from a fresh process leave nothing:
 * checked with the provider itself (local: server processes in /proc and host folders;
 * container: the engine's containers labelled `hostbroker.id`).
 */
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { InventoryFile } from '../../lib/records.js';
import { builtinProviders } from '../../lib/registry.js';
import { engineContainers, engineAnswers } from './engine.js';
import { inCI, localFolders, localServers, nodeTs, reportFigures, ROOT, tempBrokerDir } from './util.js';

const TRIALS = Number(process.env.HB_CRASH_TRIALS ?? 20);
const HOSTS = 5;
const CHILD = join(ROOT, 'test', 'reliability', 'children', 'checkout.ts');

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Trial {
  killedAfterMs: number;
  finished: boolean;
  /** Records by state at the moment of the kill. */
  states: Record<string, number>;
  cleanupMs: number;
}

/** Runs the child until `start`, then kills it after `delay` ms (or lets it finish when delay is Infinity). */
async function trial(dir: string, request: Record<string, unknown>, delay: number): Promise<{ finished: boolean; elapsed: number }> {
  const [cmd, argv] = nodeTs(CHILD, dir, String(HOSTS), JSON.stringify(request));
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += String(d)));
  // A spawn that fails emits 'error' and never 'exit'.
  const exited = new Promise<void>((r) => {
    child.once('exit', () => r());
    child.once('error', (e) => {
      err += `spawn failed: ${e.message}\n`;
      r();
    });
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += String(d);
      if (out.includes('start\n')) resolve();
    });
    void exited.then(() => reject(new Error(`checkout child exited (${child.exitCode ?? child.signalCode}) before starting: ${err}`)));
    setTimeout(() => reject(new Error(`checkout child printed nothing for 60 s (stderr: ${JSON.stringify(err.slice(-2000))})`)), 60_000).unref();
  }).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });
  const started = Date.now();
  const done = new Promise<boolean>((r) => {
    const check = (): void => {
      if (out.includes('done\n')) r(true);
    };
    child.stdout!.on('data', check);
    check();
  });
  // A child that dies on its own ends the wait at once, with what it said.
  const died = exited.then(() => {
    throw new Error(`the checkout child exited by itself (stdout: ${JSON.stringify(out)}, stderr: ${JSON.stringify(err.slice(-2000))})`);
  });
  died.catch(() => undefined); // our own kill below makes it reject too; only the race reads it
  const finished = await Promise.race([done, died, new Promise<boolean>((r) => setTimeout(() => r(false), delay === Infinity ? 120_000 : delay))]);
  const elapsed = Date.now() - started;
  child.kill('SIGKILL');
  await exited;
  expect(err).not.toMatch(/Error/);
  return { finished, elapsed };
}

async function statesOf(dir: string): Promise<Record<string, number>> {
  const text = await readFile(join(dir, 'inventory.json'), 'utf8').catch(() => undefined);
  const out: Record<string, number> = {};
  if (!text) return out;
  for (const h of InventoryFile.parse(JSON.parse(text)).hosts) out[h.state] = (out[h.state] ?? 0) + 1;
  return out;
}

/** Trials run in this many directories at once (each directory's trials run one after another). */
const LANES = 2;

/**
 * Waits until what the provider reports has not changed for 2 s (at most 60 s): an engine may
 * still create a container a killed client asked for, after the client is gone.
 */
async function settle(dir: string, leftovers: (dir: string) => Promise<string[]>): Promise<void> {
  const deadline = Date.now() + 60_000;
  let last = (await leftovers(dir)).join(',');
  let since = Date.now();
  while (Date.now() < deadline && Date.now() - since < 2000) {
    await new Promise((r) => setTimeout(r, 200));
    const now = (await leftovers(dir)).join(',');
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
}

async function crashTrials(provider: string, request: Record<string, unknown>, leftovers: (dir: string) => Promise<string[]>): Promise<void> {
  const trials: Trial[] = [];
  const fulls: number[] = [];
  await Promise.all(
    Array.from({ length: LANES }, async (_, lane) => {
      const n = Math.floor(TRIALS / LANES) + (lane < TRIALS % LANES ? 1 : 0);
      const { full } = await crashLane(provider, request, leftovers, n, trials);
      fulls.push(full);
    }),
  );
  const killedMidway = trials.filter((t) => !t.finished && Object.keys(t.states).length > 0).length;
  reportFigures(`crash/${provider}`, {
    trials: trials.length,
    hostsPerCheckout: HOSTS,
    killedMidCheckout: killedMidway,
    killedBeforeAnyRecord: trials.filter((t) => !t.finished && Object.keys(t.states).length === 0).length,
    finishedBeforeKill: trials.filter((t) => t.finished).length,
    recordsLeftByKills: trials.reduce((n, t) => n + Object.values(t.states).reduce((a, b) => a + b, 0), 0),
    fullCheckoutMs: Math.max(...fulls),
    maxCleanupMs: Math.max(...trials.map((t) => t.cleanupMs)),
  });
  // The kills must really land inside checkouts, or the test proves nothing.
  expect(killedMidway).toBeGreaterThanOrEqual(Math.floor(TRIALS / 3));
}

async function crashLane(
  provider: string,
  request: Record<string, unknown>,
  leftovers: (dir: string) => Promise<string[]>,
  count: number,
  trials: Trial[],
): Promise<{ full: number }> {
  const dir = await tempBrokerDir(`hb-crash-${provider}-`);
  dirs.push(dir);
  // Calibration: one whole checkout tells how long one takes, so kills spread over it.
  const full = await trial(dir, request, Infinity);
  expect(full.finished).toBe(true);
  const span = full.elapsed * 0.9;
  const cleanup = async (): Promise<number> => {
    const t = Date.now();
    const broker = new Broker({ directory: dir, settings: { logLevel: 'silent' } });
    await broker.checkin({ all: true });
    await broker.reap(provider);
    await broker.close();
    return Date.now() - t;
  };
  await cleanup();
  expect(await leftovers(dir)).toEqual([]);
  for (let i = 0; i < count; i++) {
    const delay = Math.random() * span;
    const { finished } = await trial(dir, request, delay);
    const states = await statesOf(dir);
    if (provider === 'container') await settle(dir, leftovers);
    const cleanupMs = await cleanup();
    trials.push({ killedAfterMs: Math.round(delay), finished, states, cleanupMs });
    const broker = new Broker({ directory: dir, settings: { logLevel: 'silent' } });
    expect(await broker.inventory(), `trial ${i}: inventory after cleanup`).toEqual([]);
    expect(await leftovers(dir), `trial ${i} (killed after ${Math.round(delay)} ms, states ${JSON.stringify(states)}): what the provider still holds`).toEqual(
      [],
    );
  }
  return { full: full.elapsed };
}

const engine = await engineAnswers();

describe.concurrent('a checkout killed with SIGKILL leaves nothing that checkin and reap cannot remove', () => {
  it(`local provider, ${TRIALS} trials`, { timeout: 400_000 }, async () => {
    await crashTrials('local', { provider: 'local' }, async (dir) => [
      ...(await localServers(dir)).map((p) => `server pid ${p}`),
      ...(await localFolders(dir)).map((f) => `folder ${f}`),
    ]);
  });

  // Until the container provider is registered (it is being built), there is nothing to crash.
  const registered = builtinProviders.some((p) => p.name === 'container');
  const why = !registered
    ? ' (skipped: the container provider is not registered yet)'
    : engine
      ? ''
      : ' (skipped: no container engine answers; scripts/setup-test-env.sh starts one)';
  it.skipIf(!registered || (!engine && !inCI))(`container provider, ${TRIALS} trials${why}`, { timeout: 400_000 }, async () => {
    await crashTrials('container', { provider: 'container', image: 'localhost/hostbroker-busybox:latest' }, async (dir) => {
      const brokerId = (await readFile(join(dir, 'broker-id'), 'utf8')).trim();
      return (await engineContainers(brokerId)).map((c) => `container ${c}`);
    });
  });
});
