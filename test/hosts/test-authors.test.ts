/**
 * What test authors rely on (issue 16), on real hosts: `local` and containers (exec and SSH
 * sessions) on the real engine. Strict commands and their errors, `spawn`ed servers waited for
 * with `waitFor` and reached through `address()`, the process tree gone after disposal, and a
 * readiness check that never passes failing the checkout with the host released.
 * Containers need scripts/setup-test-env.sh; without an engine those tests skip, except with CI=true.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { Host } from '../../hosts/host.js';
import { treeSignalScript } from '../../hosts/process.js';
import { Broker } from '../../lib/broker/index.js';
import { CommandError, PartialFailureError, UserInputError } from '../../lib/errors.js';
import { ReadinessError } from '../../hosts/readiness.js';
import { SSHD_IMAGE, containersOfBroker, probeEngine, removeBrokerContainers, skipReason, tempDirectory } from '../helpers/engine.js';

const probe = await probeEngine([SSHD_IMAGE]);
const skipContainers = skipReason(probe);

const directories: string[] = [];
const brokers: Broker[] = [];
async function newBroker(options: { check?: boolean } = {}): Promise<Broker> {
  const directory = await tempDirectory('hb-test-authors-');
  directories.push(directory);
  const broker = new Broker({ directory, settings: { container: { reapGrace: 0 } } as never, ...options });
  brokers.push(broker);
  return broker;
}

afterAll(async () => {
  for (const b of brokers) {
    await b.checkin({ all: true }).catch(() => undefined);
    if (probe.engine) await removeBrokerContainers(probe.engine, b.brokerId);
    await b.close();
  }
  for (const d of directories) await rm(d, { recursive: true, force: true });
});

/** A port nothing listens on right now (for servers on `local` hosts, which share this machine's ports). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Command lines of the host's processes containing `marker` (read from /proc: the images have no ps). */
async function processesWith(host: Host, marker: string): Promise<string[]> {
  const r = await host.execute(`for d in /proc/[0-9]*; do tr '\\0' ' ' < "$d/cmdline" 2>/dev/null; echo; done`, { check: true });
  return r.stdout.split('\n').filter((l) => l.includes(marker) && !l.includes('/proc/'));
}

const hostKinds = [
  { kind: 'local', container: false, request: { provider: 'local' as const } },
  {
    kind: 'container (exec session)',
    container: true,
    request: { provider: 'container' as const, image: SSHD_IMAGE, command: ['sleep', 'infinity'], ports: [8080] },
  },
  { kind: 'container (SSH session)', container: true, request: { provider: 'container' as const, image: SSHD_IMAGE, ssh: true, ports: [8080] } },
];

describe.each(hostKinds)('on a $kind host', ({ container, request }) => {
  const skip = container ? skipContainers : false;
  if (container && process.env.CI === 'true' && probe.skip) it('has an engine in CI', () => expect.fail(String(probe.skip)));

  it.skipIf(Boolean(skip))(
    'a spawned HTTP server is waited for with waitFor({ http }), reached through address(), and disposal ends its whole tree',
    async () => {
      const broker = await newBroker();
      await using host = await broker.checkout(request);
      const port = container ? 8080 : await freePort();
      const marker = `hb-marker-${Math.random().toString(36).slice(2, 8)}`;
      await host.execute(`mkdir -p /tmp/${marker} && echo served-${marker} > /tmp/${marker}/index.html`, { check: true });
      const seen: string[] = [];
      {
        // A background child as well: disposal must end it too, not only the server.
        await using server = await host.spawn(`sleep 1000 & exec python3 -m http.server ${port} --bind 0.0.0.0 --directory /tmp/${marker}`, {
          onStderr: (chunk) => seen.push(chunk),
          env: { MARK: marker },
        });
        expect(server.pid).toBeGreaterThan(1);
        // Composed: the port accepts connections, and one of two checks passes (the command one never does).
        await host.waitFor([{ port }, { any: [{ command: 'false' }, { http: { port, path: '/index.html', body: `served-${marker}` } }] }], {
          timeout: 30_000,
        });
        const address = host.address(port);
        if (container) expect(address.port).not.toBe(8080); // the published host port
        const response = await fetch(`http://${address.host}:${address.port}/index.html`);
        expect(response.status).toBe(200);
        expect(await response.text()).toBe(`served-${marker}\n`);
        expect(await processesWith(host, 'sleep 1000')).not.toEqual([]);
      }
      // Gone: the server and its background child.
      expect(await processesWith(host, `--directory /tmp/${marker}`)).toEqual([]);
      expect(await processesWith(host, 'sleep 1000')).toEqual([]);
      expect(seen.join('')).toContain('GET /index.html');
    },
  );

  it.skipIf(Boolean(skip))('spawn: lines(), stdin, wait() and kill()', async () => {
    const broker = await newBroker();
    await using host = await broker.checkout(request);
    const echo = await host.spawn('while read -r line; do echo "got $line"; done; echo bye >&2; exit 4');
    echo.stdin.write('one\ntwo\n');
    echo.stdin.end();
    const lines: string[] = [];
    for await (const line of echo.lines()) lines.push(line);
    expect(lines).toEqual(['got one', 'got two']);
    expect(await echo.wait()).toMatchObject({ status: 4, stderr: 'bye\n' });

    const strict = await host.spawn('echo nope >&2; exit 3', { check: true });
    await expect(strict.wait()).rejects.toMatchObject({ code: 'COMMAND', status: 3, stderr: 'nope\n' });

    const sleeper = await host.spawn('exec sleep 1001');
    // A pid whose start time is not the recorded one was reused by another process: left alone.
    await host.execute(treeSignalScript(sleeper.pid!, '1', 'KILL', false), { check: true });
    expect(await processesWith(host, 'sleep 1001')).toHaveLength(1);
    await sleeper.kill('TERM');
    const ended = await sleeper.wait();
    expect(ended.signal).toBe('TERM');
    expect(ended.status).toBe(143);
  });

  it.skipIf(Boolean(skip))('execute({ check: true }) rejects with a CommandError carrying the command, status and bounded output tails', async () => {
    const broker = await newBroker();
    await using host = await broker.checkout(request);
    const failing = `head -c 20000 /dev/zero | tr '\\0' e >&2; echo out; exit 7`;
    const error = await host.execute(failing, { check: true }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandError);
    expect(error).toMatchObject({ code: 'COMMAND', command: failing, status: 7, stdout: 'out\n', host: undefined });
    const stderr = (error as CommandError).stderr;
    expect(stderr.length).toBeLessThanOrEqual(4096);
    expect(stderr.endsWith('eeee')).toBe(true);
    // Without check the status is returned, and streaming callbacks see the output as it comes.
    const chunks: string[] = [];
    const r = await host.execute('echo a; echo b; exit 2', { onStdout: (c) => chunks.push(c) });
    expect(r).toMatchObject({ status: 2, stdout: 'a\nb\n' });
    expect(chunks.join('')).toBe('a\nb\n');
  });
});

describe('strict commands as a default', () => {
  it('a Broker with check: true makes every host strict; per call check: false and host.check turn it off', async () => {
    const broker = await newBroker({ check: true });
    await using group = await broker.checkout({ provider: 'local', count: 2 });
    await expect(group[0]!.execute('exit 5')).rejects.toMatchObject({ code: 'COMMAND', status: 5 });
    expect((await group[0]!.execute('exit 5', { check: false })).status).toBe(5);
    // HostGroup.execute: each host's CommandError is one failure of the group.
    const error = await group.execute('echo fails-$HOME >&2; exit 9').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PartialFailureError);
    const failures = (error as PartialFailureError).failures;
    expect(failures).toHaveLength(2);
    for (const f of failures) expect(f.error).toMatchObject({ code: 'COMMAND', status: 9 });
    group[1]!.check = false;
    expect((await group[1]!.execute('exit 6')).status).toBe(6);
  });
});

describe.skipIf(Boolean(skipContainers))('reachable addresses and failed readiness on containers', () => {
  it('address() of an unpublished container port is a UserInputError naming the published ones', async () => {
    const broker = await newBroker();
    await using host = await broker.checkout({ provider: 'container', image: SSHD_IMAGE, command: ['sleep', 'infinity'], ports: [8080] });
    expect(host.record.ports?.['8080']?.host).toBe('127.0.0.1');
    const error = (() => {
      try {
        host.address(9090);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(UserInputError);
    expect(error).toMatchObject({ code: 'USER_INPUT' });
    expect((error as Error).message).toContain('8080');
  });

  it('a readiness check that never passes fails the checkout with a ReadinessError and the container is removed', async () => {
    const broker = await newBroker();
    const error = await broker
      .checkout({
        provider: 'container',
        image: SSHD_IMAGE,
        command: ['sleep', 'infinity'],
        ports: [8080],
        timeout: '12s',
        waitFor: [{ http: { port: 8080 } }],
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReadinessError);
    expect(error).toMatchObject({ code: 'TIMEOUT' });
    expect((error as ReadinessError).check).toContain(':8080/');
    expect((error as ReadinessError).lastResult).not.toBe('');
    expect(await broker.inventory()).toEqual([]);
    expect(await containersOfBroker(probe.engine!, broker.brokerId)).toEqual([]);
  });
});

describe('failed readiness on local', () => {
  it('fails the checkout with the check and its last result, and the host is released', async () => {
    const broker = await newBroker();
    const error = await broker
      .checkout({ provider: 'local', timeout: '8s', waitFor: [{ file: 'service.log', contains: 'listening' }, { command: 'true' }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReadinessError);
    // The check of the list that never passed is named, with what it saw.
    expect(error).toMatchObject({ code: 'TIMEOUT', check: 'service.log contains listening', lastResult: expect.stringContaining('service.log') });
    expect(await broker.inventory()).toEqual([]);
    // The local provider's host folder (its home and server) is gone.
    const root = `${broker.directory}/local-hosts`;
    const { readdir } = await import('node:fs/promises');
    expect(existsSync(root) ? await readdir(root) : []).toEqual([]);
  });

  it('a malformed check is refused before anything is made', async () => {
    const broker = await newBroker();
    await expect(broker.checkout({ provider: 'local', waitFor: [{ prot: 80 } as never] })).rejects.toMatchObject({ code: 'USER_INPUT' });
    expect(await broker.inventory()).toEqual([]);
  });
});
