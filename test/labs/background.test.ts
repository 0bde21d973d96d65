/**
 * Background mode of the real CLI: `checkout --background` returns at once with a job, the job
 * does the work in a detached process with its own log, `jobs --wait` waits for it and exits
 * with its status, and a job killed mid-checkout leaves records that `checkin --all` finishes.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localFolders, localServers } from '../reliability/util.js';
import { NODE_ARGS } from '../helpers/cli-process.js';

let dir: string;

function cli(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [...NODE_ARGS, ...args], { env: { ...process.env, BROKER_DIRECTORY: dir, CI: '' }, timeout: 120_000 }, (error, stdout, stderr) =>
      done({ status: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function json<T>(args: string[]): Promise<T> {
  const r = await cli([...args, '--json']);
  return JSON.parse(r.stdout) as T;
}

interface Job {
  id: string;
  pid: number;
  state: string;
  exitCode?: number;
  command: string[];
  log: string;
}

async function inventory(): Promise<Array<{ id: string; state: string; pid?: number }>> {
  const text = await readFile(join(dir, 'inventory.json'), 'utf8').catch(() => '{"hosts":[]}');
  return (JSON.parse(text) as { hosts: Array<{ id: string; state: string; pid?: number }> }).hosts;
}

describe('background jobs (real CLI, local hosts)', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hb-jobs-'));
  });
  afterAll(async () => {
    await cli(['checkin', '--all']);
    await rm(dir, { recursive: true, force: true });
  }, 120_000);

  it('checks out 3 hosts in the background; jobs lists the job and --wait exits with its status', async () => {
    const started = await json<{ job: string; pid: number; log: string }>(['checkout', '--provider', 'local', '--count', '3', '--background']);
    expect(started.log).toBe(join(dir, 'logs', `${started.job}.log`));
    const waited = await cli(['jobs', '--wait', started.job, '--json']);
    expect(waited.status).toBe(0);
    expect(JSON.parse(waited.stdout)).toMatchObject({
      id: started.job,
      state: 'succeeded',
      exitCode: 0,
      command: ['checkout', '--provider', 'local', '--count', '3', '--json'],
    });
    const hosts = await inventory();
    expect(hosts.filter((h) => h.state === 'ready')).toHaveLength(3);
    // The job's output went to its log, not to the parent (as JSON: the command line asked for it).
    expect(await readFile(started.log, 'utf8')).toMatch(/local-/);
    const listed = await json<Job[]>(['jobs']);
    expect(listed.map((j) => [j.id, j.state])).toContainEqual([started.job, 'succeeded']);
    expect((await cli(['checkin', '--all'])).status).toBe(0);
  }, 180_000);

  it('a failing background command: --wait exits with the status the command would have had', async () => {
    const foreground = await cli(['checkout', '--provider', 'no-such-provider']);
    expect(foreground.status).not.toBe(0);
    const started = await json<{ job: string }>(['checkout', '--provider', 'no-such-provider', '-b']);
    const waited = await cli(['jobs', '--wait', started.job]);
    expect(waited.status).toBe(foreground.status);
    expect(await readFile(join(dir, 'logs', `${started.job}.log`), 'utf8')).toContain('no-such-provider');
  }, 120_000);

  it('a background checkout killed half-way is shown as killed and `checkin --all` finishes its hosts', async () => {
    const started = await json<{ job: string; pid: number }>(['checkout', '--provider', 'local', '--count', '3', '--background']);
    // Kill it once it has written its records (intent records carry its pid).
    for (let i = 0; i < 600 && !(await inventory()).some((h) => h.pid === started.pid); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await inventory()).some((h) => h.pid === started.pid)).toBe(true);
    process.kill(started.pid, 'SIGKILL');
    const waited = await cli(['jobs', '--wait', started.job, '--json']);
    expect(waited.status).toBe(1);
    expect(JSON.parse(waited.stdout)).toMatchObject({ id: started.job, state: 'killed' });
    expect((await cli(['checkin', '--all'])).status).toBe(0);
    expect(await inventory()).toEqual([]);
    expect(await localServers(dir)).toEqual([]);
    expect(await localFolders(dir)).toEqual([]);
  }, 180_000);
});
