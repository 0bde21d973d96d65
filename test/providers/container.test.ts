/**
 * The container provider against the real engine (Podman's Docker API here): sessions, labels,
 * cleanup checked with the engine, sync, reap, the run action, and the errors users get.
 * Needs scripts/setup-test-env.sh; skips without an engine, except with CI=true.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { BrokerError, HostConnectionError, ProviderError, TimeoutError } from '../../lib/errors.js';
import { INVENTORY_FILE } from '../../lib/inventory/index.js';
import { LABELS } from '../../providers/container/create-request.js';
import { engineCandidates, forgetEngines } from '../../providers/container/engine.js';
import {
  BUSYBOX_IMAGE,
  SSHD_IMAGE,
  containerExists,
  containersLabelled,
  containersOfBroker,
  probeEngine,
  removeBrokerContainers,
  skipReason,
  startPodmanService,
  tempDirectory,
} from '../helpers/engine.js';
import { inventoryOf } from '../helpers/inventory.js';

const probe = await probeEngine();
const skip = skipReason(probe);
const engine = () => {
  if (!probe.engine) throw new Error(`no container engine: ${probe.skip}`);
  return probe.engine;
};

const directories: string[] = [];
async function newBroker(settings: Record<string, unknown> = {}): Promise<Broker> {
  const directory = await tempDirectory();
  directories.push(directory);
  return new Broker({ directory, settings: { container: { reapGrace: 0 }, ...settings } as never });
}

afterAll(async () => {
  if (!probe.engine) return;
  for (const directory of directories) await removeBrokerContainers(probe.engine, new Broker({ directory }).brokerId);
});

/** A single-host request (typed, so checkout returns a Host). */
const request = (args: { image: string; ssh?: boolean }) => ({ provider: 'container' as const, ...args });

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe.skipIf(Boolean(skip))(`container provider on a real engine${skip ? ` (skipped: ${skip})` : ''}`, () => {
  if (process.env.CI === 'true' && probe.skip) it('has an engine in CI', () => expect.fail(String(probe.skip)));

  describe.each([
    { kind: 'exec', args: { image: BUSYBOX_IMAGE } },
    { kind: 'ssh', args: { image: SSHD_IMAGE, ssh: true } },
  ])('$kind session', ({ kind, args }) => {
    let broker: Broker;
    beforeAll(async () => {
      broker = await newBroker();
    });
    afterAll(async () => {
      await broker.checkin({ all: true }).catch(() => undefined);
      await broker.close();
    });

    it('runs commands: status, stdout, stderr, env, cwd, and stdin', async () => {
      await using host = await broker.checkout(request(args));
      expect(host.record.connection?.kind).toBe(kind === 'ssh' ? 'ssh' : 'provider');
      const r = await host.execute('echo out; echo err >&2; exit 3');
      expect(r).toMatchObject({ status: 3, stdout: 'out\n', stderr: 'err\n' });
      // The container's hostname is the host's name, as users of the seed API expect.
      expect((await host.execute('hostname')).stdout.trim()).toBe(host.hostname);
      expect((await host.execute('echo "$GREETING" && pwd', { env: { GREETING: "it's here" }, cwd: '/tmp' })).stdout).toBe("it's here\n/tmp\n");
      const input = randomBytes(100_000);
      const counted = await host.execute('wc -c', { input });
      expect(counted.stdout.trim()).toBe('100000');
      const echoed = await host.session.runRaw('cat', { input });
      expect(sha(echoed.stdout)).toBe(sha(input));
    });

    it('round-trips a binary file at an absolute path and checks it on the host', async () => {
      await using host = await broker.checkout(request(args));
      const data = randomBytes(1024 * 1024 + 3);
      await host.session.write(data, '/var/tmp/deep/dir/blob.bin', { mode: 0o600 });
      expect(sha(await host.session.read('/var/tmp/deep/dir/blob.bin'))).toBe(sha(data));
      const onHost = await host.execute('sha256sum /var/tmp/deep/dir/blob.bin; stat -c %a /var/tmp/deep/dir/blob.bin');
      expect(onHost.stdout).toBe(`${sha(data)}  /var/tmp/deep/dir/blob.bin\n600\n`);
      await expect(host.session.read('/no/such/file')).rejects.toThrow(/no such file/i);
    });

    it('ends a command that passes its timeout, and the process is gone on the host', async () => {
      await using host = await broker.checkout(request(args));
      const started = Date.now();
      const error = await host.execute('sleep 417; echo never', { timeout: 1000 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TimeoutError);
      expect(Date.now() - started).toBeLessThan(15_000);
      // ps from busybox or procps: no `sleep 417` left.
      let left = '';
      for (let i = 0; i < 20; i++) {
        left = (await host.execute('ps -ef 2>/dev/null || ps')).stdout;
        if (!left.includes('sleep 417')) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(left).not.toContain('sleep 417');
      expect((await host.execute('echo still usable')).stdout).toBe('still usable\n');
    });

    it('opens a shell with a terminal', async () => {
      await using host = await broker.checkout(request(args));
      const shell = await host.session.shell({ rows: 30, cols: 100 });
      let out = '';
      shell.stdout.on('data', (d: Buffer) => (out += d.toString()));
      shell.stdin.write('tty; stty size; echo $((20+22))-done; exit\n');
      await shell.exit;
      expect(out).toMatch(/\/dev\/pts\/\d+/);
      expect(out).toContain('42-done');
    });
  });

  it('labels containers with record id, owner, broker identity and lease, and removes them (and their anonymous volumes) on checkin', async () => {
    const broker = await newBroker();
    const host = await broker.checkout({ provider: 'container', image: BUSYBOX_IMAGE, volumes: ['/data'], lease: '1h' });
    const [info] = await containersLabelled(engine(), LABELS.id, host.id);
    expect(info?.Labels).toMatchObject({
      [LABELS.id]: host.id,
      [LABELS.owner]: broker.owner,
      [LABELS.broker]: broker.brokerId,
      [LABELS.lease]: host.record.leaseExpires,
    });
    const inspected = await engine().docker.getContainer(info!.Id).inspect();
    const volume = inspected.Mounts.find((m) => m.Destination === '/data')?.Name;
    expect(volume).toBeTruthy();
    await host.checkin();
    expect(await containerExists(engine(), info!.Id)).toBe(false);
    expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
    await expect(engine().docker.getVolume(volume!).inspect()).rejects.toThrow();
    await broker.close();
  });

  it('checks in 5 concurrently checked-out hosts: the engine has none of them afterwards', async () => {
    const broker = await newBroker();
    const group = await broker.checkout({ provider: 'container', image: BUSYBOX_IMAGE, count: 5 });
    expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(5);
    const results = await group.execute('hostname');
    expect(results.map((r) => r.stdout.trim()).sort()).toEqual(group.map((h) => h.hostname).sort());
    await group.checkin();
    expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
    expect(await broker.inventory()).toHaveLength(0);
    await broker.close();
  });

  it('keeps the SSH key as a file under the broker directory, never in the inventory, and deletes it on checkin', async () => {
    const broker = await newBroker();
    const host = await broker.checkout({ provider: 'container', image: SSHD_IMAGE, ssh: true });
    const connection = host.record.connection;
    expect(connection?.kind).toBe('ssh');
    if (connection?.kind !== 'ssh') return;
    expect(connection.host).toBe('127.0.0.1');
    expect(connection.privateKeyPath?.startsWith(broker.directory)).toBe(true);
    expect(await readFile(connection.privateKeyPath!, 'utf8')).toContain('PRIVATE KEY');
    const inventory = await readFile(`${broker.directory}/${INVENTORY_FILE}`, 'utf8');
    expect(inventory).not.toContain('PRIVATE KEY');
    expect(inventory).toContain(connection.privateKeyPath!);
    expect((await host.execute('id -un')).stdout).toBe('root\n');
    await host.checkin();
    expect(existsSync(connection.privateKeyPath!)).toBe(false);
    await broker.close();
  });

  it('sync rebuilds the inventory from labels: hosts another process checked out appear and work', async () => {
    const broker = await newBroker();
    // A second process checks out two hosts (one exec, one SSH) and exits without checking in.
    const script = `
      import { Broker } from ${JSON.stringify(new URL('../../lib/broker/index.ts', import.meta.url).pathname)};
      const broker = new Broker({ directory: process.argv[2] });
      const a = await broker.checkout({ provider: 'container', image: ${JSON.stringify(BUSYBOX_IMAGE)}, name: 'other-exec' });
      const b = await broker.checkout({ provider: 'container', image: ${JSON.stringify(SSHD_IMAGE)}, ssh: true });
      console.log(JSON.stringify([a.id, b.id]));
      await broker.close();
    `;
    const ids = JSON.parse(await runTsx(script, [broker.directory])) as string[];
    // Lose the inventory entirely: only the engine knows about the hosts now.
    await rm(`${broker.directory}/${INVENTORY_FILE}`);
    expect(await broker.inventory()).toHaveLength(0);
    const result = await broker.sync('container');
    expect(result.added.map((r) => r.id).sort()).toEqual([...ids].sort());
    const records = await broker.inventory();
    const exec = records.find((r) => r.id === ids[0]);
    expect(exec).toMatchObject({
      name: 'other-exec',
      hostname: 'other-exec',
      state: 'ready',
      owner: broker.owner,
      recipe: { provider: 'container', args: { image: BUSYBOX_IMAGE } },
    });
    const ssh = records.find((r) => r.id === ids[1]);
    expect(ssh?.connection).toMatchObject({ kind: 'ssh', host: '127.0.0.1', username: 'root' });
    for (const record of records) {
      const host = broker.reconstruct(record);
      expect((await host.execute('hostname')).stdout.trim()).toBe(record.hostname);
    }
    // A container removed behind hostbroker's back disappears from the inventory on the next sync.
    const gone = engine().docker.getContainer(exec!.providerId!);
    await gone.kill().catch(() => undefined);
    await gone.remove({ force: true });
    const again = await broker.sync('container');
    expect(again.removed.map((r) => r.id)).toEqual([exec!.id]);
    await broker.checkin({ all: true });
    expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
    await broker.close();
  });

  describe.each(['checkin', 'reap'] as const)('a process SIGKILLed in the middle of a 5-host checkout (cleanup by %s)', (cleanup) => {
    it('leaves nothing that cleanup cannot remove, checked with the engine', async () => {
      const broker = await newBroker();
      const script = `
        import { Broker } from ${JSON.stringify(new URL('../../lib/broker/index.ts', import.meta.url).pathname)};
        const broker = new Broker({ directory: process.argv[2] });
        await broker.checkout({ provider: 'container', image: ${JSON.stringify(SSHD_IMAGE)}, ssh: true, count: 5 });
        console.log('finished');
      `;
      const child = spawnTsx(script, [broker.directory]);
      // Kill as soon as the engine has the first container: the others are somewhere in flight.
      const deadline = Date.now() + 60_000;
      while ((await containersOfBroker(engine(), broker.brokerId)).length === 0) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error('the child made no container');
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      // Requests the engine already accepted still land after the kill (a busy engine may create
      // a container seconds later): wait until its set of containers stops changing.
      await settled(broker.brokerId);
      const records = await broker.inventory();
      expect(records.length).toBeGreaterThan(0);
      if (cleanup === 'checkin') {
        await broker.checkin({ all: true });
      } else {
        await broker.reap('container');
        // What reap leaves are finished hosts with a record; checking those in is a user's choice.
        const left = await broker.inventory();
        for (const r of left) expect(r.state).toBe('ready');
        const containers = await containersOfBroker(engine(), broker.brokerId);
        expect(containers.map((c) => c.Labels[LABELS.id]).sort()).toEqual(left.map((r) => r.id).sort());
        await broker.checkin({ all: true });
      }
      expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
      expect(await broker.inventory()).toHaveLength(0);
      await broker.close();
    }, 240_000);
  });

  // Orphaned and expired hosts are the conformance suite's reap case; what inventory() cannot
  // list is the provider's own reap: `run` containers left by a process that died.
  it('reap removes `run` containers whose lease passed, and leaves running ones alone', async () => {
    const broker = await newBroker();
    const make = (lease: string) =>
      engine().docker.createContainer({
        Image: BUSYBOX_IMAGE,
        Cmd: ['sleep', '300'],
        Labels: {
          [LABELS.broker]: broker.brokerId,
          [LABELS.action]: 'run',
          [LABELS.name]: `run-${lease === 'past' ? 'old' : 'new'}`,
          [LABELS.lease]: new Date(Date.now() + (lease === 'past' ? -60_000 : 3600_000)).toISOString(),
        },
      });
    const old = await make('past');
    const running = await make('future');
    const { removed } = await broker.reap('container');
    expect(removed).toEqual(['run-old']);
    expect(await containerExists(engine(), old.id)).toBe(false);
    expect(await containerExists(engine(), running.id)).toBe(true);
    await running.remove({ force: true });
    await broker.close();
  });

  it('reap leaves young containers of unknown records alone (their record may be on its way)', async () => {
    const broker = await newBroker({ container: { reapGrace: '10m' } });
    const host = await broker.checkout({ provider: 'container', image: BUSYBOX_IMAGE });
    await inventoryOf(broker).remove([host.id]);
    expect((await broker.reap('container')).removed).toEqual([]);
    expect(await containerExists(engine(), host.record.providerId!)).toBe(true);
    await broker.close();
  });

  it('execute run: runs a container to completion, returns status and output, and removes it', async () => {
    const broker = await newBroker();
    const result = (await broker.execute({
      provider: 'container',
      action: 'run',
      image: BUSYBOX_IMAGE,
      command: 'echo out; echo err >&2; cat; exit 7',
      input: 'fed\n',
    })) as Record<string, unknown>;
    expect(result).toMatchObject({ status: 7, stdout: 'out\nfed\n', stderr: 'err\n', image: BUSYBOX_IMAGE });
    expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
    const slow = await broker
      .execute({ provider: 'container', action: 'run', image: BUSYBOX_IMAGE, command: ['sleep', '300'], timeout: '1s' })
      .catch((e: unknown) => e);
    expect(slow).toBeInstanceOf(BrokerError);
    expect(String((slow as Error).message)).toMatch(/did not finish within 1000 ms/);
    expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
    await broker.close();
  });

  describe('errors users can act on, and nothing leaked', () => {
    it('an image that does not exist: says to build or pull it', async () => {
      const broker = await newBroker();
      const error = await broker.checkout({ provider: 'container', image: 'localhost/hostbroker-no-such-image:1', count: 2 }).catch((e: unknown) => e);
      expect(BrokerError.isInstance(error)).toBe(true);
      const message = String((error as Error).message);
      expect(message).toContain('localhost/hostbroker-no-such-image:1');
      expect(message).toMatch(/is not on the engine/);
      expect(message).toMatch(/podman pull|docker pull/);
      expect(message).toContain('setup-test-env.sh');
      expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
      expect(await broker.inventory()).toHaveLength(0);
      await broker.close();
    });

    it('pull: never fails at once for a missing image', async () => {
      const broker = await newBroker();
      const error = await broker.checkout({ provider: 'container', image: 'localhost/hostbroker-no-such-image:2', pull: 'never' }).catch((e: unknown) => e);
      expect(String((error as Error).message)).toMatch(/pull is `never`/);
      await broker.close();
    });

    it('a host port that is already taken: names the port, removes the container', async () => {
      const server: Server = createServer();
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as { port: number }).port;
      try {
        const broker = await newBroker();
        const error = await broker.checkout({ provider: 'container', image: BUSYBOX_IMAGE, ports: [`127.0.0.1:${port}:8080`] }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ProviderError);
        expect(String((error as Error).message)).toMatch(new RegExp(`port .*${port}.* already in use`));
        expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
        expect(await broker.inventory()).toHaveLength(0);
        await broker.close();
      } finally {
        server.close();
      }
    });

    it('a command that is not in the image: says so, removes the container', async () => {
      const broker = await newBroker();
      const error = await broker.checkout({ provider: 'container', image: BUSYBOX_IMAGE, command: ['/no-such-program'] }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ProviderError);
      expect(String((error as Error).message)).toMatch(/its command is not in the image .*no-such-program/);
      expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
      expect(await broker.inventory()).toHaveLength(0);
      await broker.close();
    });

    it('an SSH image whose sshd dies: says the container exited, with its output', async () => {
      const broker = await newBroker();
      const error = await broker
        .checkout({ provider: 'container', image: BUSYBOX_IMAGE, ssh: true, command: 'sleep 1; echo sshd-is-missing >&2; exit 3' })
        .catch((e: unknown) => e);
      expect(BrokerError.isInstance(error)).toBe(true);
      expect(String((error as Error).message)).toMatch(/exited \(status 3\); its output: sshd-is-missing/);
      expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
      expect(await broker.inventory()).toHaveLength(0);
      await broker.close();
    });

    it('no engine: lists every place tried and how to start one', async () => {
      forgetEngines();
      const broker = await newBroker({ container: { socketPath: '/nonexistent/hostbroker/podman.sock' } });
      const error = await broker.checkout({ provider: 'container', image: BUSYBOX_IMAGE }).catch((e: unknown) => e);
      const message = String((error as Error).message);
      expect(message).toContain('unix:///nonexistent/hostbroker/podman.sock');
      expect(message).toMatch(/podman system service/);
      expect(message).toMatch(/DOCKER_HOST/);
      expect(await broker.inventory()).toHaveLength(0);
      await broker.close();
      // Discovery without settings tries DOCKER_HOST, the Podman sockets and Docker's, in order.
      const places = engineCandidates({}, { DOCKER_HOST: 'tcp://10.0.0.1:2375', XDG_RUNTIME_DIR: '/run/user/1000' }).map((c) => c.where);
      expect(places).toEqual([
        'tcp://10.0.0.1:2375',
        'unix:///run/user/1000/podman/podman.sock',
        'unix:///run/podman/podman.sock',
        'unix:///var/run/docker.sock',
      ]);
    });

    it('an engine that goes away mid-checkout: a clear error, and after it is back checkin leaves nothing', async () => {
      const service = await startPodmanService();
      try {
        const broker = await newBroker({ container: { socketPath: service.socketPath } });
        // One at a time: the later hosts need the engine after it is gone, whatever the timing.
        const pending = broker.checkout({ provider: 'container', image: SSHD_IMAGE, ssh: true, count: 3, concurrency: 1 }).catch((e: unknown) => e);
        const deadline = Date.now() + 60_000;
        while ((await containersOfBroker(engine(), broker.brokerId)).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        await service.kill();
        const error = await pending;
        expect(BrokerError.isInstance(error)).toBe(true);
        expect(String((error as Error).message)).toMatch(/stopped answering|does not answer|no container engine answered/);
        expect(String((error as Error).message)).toContain(service.socketPath);
        // The engine is back (same socket): everything the failed checkout made can be removed.
        const back = await startPodmanService(service.socketPath);
        try {
          forgetEngines();
          await new Promise((r) => setTimeout(r, 2000));
          await broker.checkin({ all: true });
          await broker.reap('container');
          expect(await containersOfBroker(engine(), broker.brokerId)).toHaveLength(0);
          expect(await broker.inventory()).toHaveLength(0);
        } finally {
          await back.kill();
        }
        await broker.close();
      } finally {
        await service.kill();
      }
    });

    it('a container removed behind its back: the session error says so', async () => {
      const broker = await newBroker();
      const host = await broker.checkout({ provider: 'container', image: BUSYBOX_IMAGE });
      const c = engine().docker.getContainer(host.record.providerId!);
      await c.kill().catch(() => undefined);
      await c.remove({ force: true });
      const error = await host.execute('true').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HostConnectionError);
      expect(String((error as Error).message)).toMatch(/no longer exists/);
      // Checkin of a host whose container is gone succeeds (already gone = released).
      await host.checkin();
      expect(await broker.inventory()).toHaveLength(0);
      await broker.close();
    });
  });
});

// ---------------------------------------------------------------- helpers

/** Waits until the engine's containers of a broker have not changed for 5 s (at most 2 min). */
async function settled(brokerId: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  let last = '';
  let since = Date.now();
  while (Date.now() < deadline) {
    const now = (await containersOfBroker(engine(), brokerId))
      .map((c) => c.Id)
      .sort()
      .join(',');
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= 5000) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

function scriptFile(source: string): string {
  const file = join(tmpdir(), `hb-container-child-${process.pid}-${randomBytes(4).toString('hex')}.mts`);
  writeFileSync(file, source);
  return file;
}

/** One Node process (the tsx CLI would add a parent process, and SIGKILL must hit the real one). */
function spawnTsx(source: string, args: string[]): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', scriptFile(source), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: new URL('../..', import.meta.url).pathname,
  });
}

async function runTsx(source: string, args: string[]): Promise<string> {
  const child = spawnTsx(source, args);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`child process failed (${code}): ${err}`);
  return out.trim().split('\n').pop()!;
}
