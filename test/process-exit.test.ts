/**
 * A process that checks a host out and stops using it exits by itself, as a CI step does that
 * hands hosts to the next step: idle SSH connections, keepalive timers, engine sockets and the
 * local provider's server never keep it alive, while a command still running does. Each case is
 * a real child process for a provider that runs here (local, container over exec and over SSH,
 * static against a real sshd); the host stays usable after the child is gone, and this process
 * checks it in.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Broker } from '../lib/broker/index.js';
import { isProcessAlive } from '../lib/identity.js';
import { BUILT, LIBRARY, SOURCE_LOADER } from './helpers/cli-process.js';
import { BUSYBOX_IMAGE, SSHD_IMAGE, probeEngine, removeBrokerContainers, skipReason } from './helpers/engine.js';
import { sshdAvailable, startSshd, type Sshd } from './helpers/sshd.js';

/** Far more than the child needs after its work (it should exit within a second); a hang is killed at this bound. */
const EXIT_BOUND_MS = 15_000;

/**
 * The user's script: check out (no checkin, no close), run a command, then start one more that
 * it does not await, whose output it prints when it completes. Nothing else is pending after it.
 */
const SCRIPT = `
import { Broker } from ${JSON.stringify(LIBRARY)};
const broker = new Broker({ directory: process.env.BROKER_DIRECTORY });
const host = await broker.checkout(JSON.parse(process.argv[2]));
const first = await host.execute('echo ready');
process.stdout.write(JSON.stringify({ id: host.record.id, out: first.stdout }) + '\\n');
host.execute('sleep 1; echo late').then((r) => process.stdout.write('finished: ' + r.stdout));
`;

interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  killedAtBound: boolean;
  stdout: string;
  stderr: string;
}

const probe = await probeEngine();
const engineSkip = skipReason(probe);
const haveSshd = sshdAvailable();

describe('a process that checks out and stops using its hosts exits by itself', { timeout: 180_000 }, () => {
  let dir: string;
  let script: string;
  let sshd: Sshd | undefined;
  const directories: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hb-exit-'));
    script = join(dir, BUILT ? 'script.mjs' : 'script.mts'); // the script is plain JavaScript; tsx runs it as .mts
    await writeFile(script, SCRIPT);
    if (haveSshd) sshd = await startSshd();
  });
  afterAll(async () => {
    for (const directory of directories) {
      const broker = new Broker({ directory });
      await broker.checkin({ all: true }).catch(() => undefined);
      if (probe.engine) await removeBrokerContainers(probe.engine, broker.brokerId);
    }
    await sshd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs the script for `request` in a fresh broker directory; kills it only if it outlives the bound. */
  async function runChild(request: Record<string, unknown>, settings: Record<string, unknown> = {}): Promise<{ run: ChildRun; directory: string; id: string }> {
    const directory = await mkdtemp(join(dir, 'broker-'));
    directories.push(directory);
    await writeFile(join(directory, 'broker_settings.yaml'), stringify({ container: { reapGrace: 0 }, ...settings }));
    const child = spawn(process.execPath, [...SOURCE_LOADER, script, JSON.stringify(request)], {
      env: { ...process.env, BROKER_DIRECTORY: directory, CI: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run: ChildRun = { code: null, signal: null, killedAtBound: false, stdout: '', stderr: '' };
    let bound: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d: Buffer) => {
      run.stdout += String(d);
      // The bound starts once the child's own work is under way (checkout can take longer on a loaded machine).
      if (!bound && run.stdout.includes('\n')) {
        bound = setTimeout(() => {
          run.killedAtBound = true;
          child.kill('SIGKILL');
        }, EXIT_BOUND_MS);
      }
    });
    child.stderr.on('data', (d: Buffer) => (run.stderr += String(d)));
    await new Promise<void>((done) =>
      child.on('close', (code, signal) => {
        clearTimeout(bound);
        run.code = code;
        run.signal = signal;
        done();
      }),
    );
    const first = run.stdout.split('\n')[0] ?? '';
    const id = first.startsWith('{') ? (JSON.parse(first) as { id: string }).id : '';
    return { run, directory, id };
  }

  function expectExitedByItself(run: ChildRun): void {
    expect({ killedAtBound: run.killedAtBound, code: run.code, signal: run.signal, stderr: run.stderr }).toEqual({
      killedAtBound: false,
      code: 0,
      signal: null,
      stderr: '',
    });
    expect(run.stdout).toMatch(/^\{.*"out":"ready\\n"\}\n/);
    // The command it did not await still ran to the end: work under way kept the process alive.
    expect(run.stdout).toMatch(/\nfinished: late\n$/);
  }

  /** The host outlived the process that made it: usable from here, then checked in. */
  async function useAndCheckIn(directory: string, id: string): Promise<Broker> {
    const broker = new Broker({ directory });
    const [record] = await broker.inventory({ filter: `id=${id}` });
    expect(record?.state).toBe('ready');
    const host = broker.reconstruct(record!);
    expect((await host.execute('echo still here')).stdout).toBe('still here\n');
    await broker.checkin(host);
    expect(await broker.inventory()).toEqual([]);
    return broker;
  }

  it('local: exits, and the host server it started keeps running until checkin', async () => {
    const { run, directory, id } = await runChild({ provider: 'local' });
    expectExitedByItself(run);
    const [record] = await new Broker({ directory }).inventory({ filter: `id=${id}` });
    const pid = (record?.data as { pid?: number } | undefined)?.pid;
    expect(pid !== undefined && isProcessAlive(pid)).toBe(true);
    await useAndCheckIn(directory, id);
    // Checkin stops the server the child had started.
    expect(isProcessAlive(pid!)).toBe(false);
  });

  describe.skipIf(!haveSshd)('static', () => {
    it('static (a real sshd): exits, the machine stays reserved until checkin', async () => {
      const machine = { name: 'sshd', hostname: sshd!.host, port: sshd!.port, username: sshd!.username, privateKeyPath: sshd!.privateKeyPath };
      const { run, directory, id } = await runChild({ provider: 'static', name: 'sshd' }, { static: { hosts: [machine] } });
      expectExitedByItself(run);
      await useAndCheckIn(directory, id);
    });
  });

  describe.skipIf(Boolean(engineSkip))(`container${engineSkip ? ` (skipped: ${engineSkip})` : ''}`, () => {
    it('container over exec: exits, the container keeps running until checkin', async () => {
      const { run, directory, id } = await runChild({ provider: 'container', image: BUSYBOX_IMAGE });
      expectExitedByItself(run);
      await useAndCheckIn(directory, id);
    });

    it('container over SSH: exits, the container keeps running until checkin', async () => {
      const { run, directory, id } = await runChild({ provider: 'container', image: SSHD_IMAGE, ssh: true });
      expectExitedByItself(run);
      await useAndCheckIn(directory, id);
    });
  });
});
