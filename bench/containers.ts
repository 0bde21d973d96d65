/**
 * `npm run bench:containers`: how long until 10 SSH-ready container hosts all answer
 * `execute('true')`, through hostbroker, through the raw engine (`podman run -d` ×10 in parallel,
 * then poll until an SSH login runs `true`), and through testcontainers-node. Also the checkout
 * of 10 exec-session hosts. Medians of BENCH_ROUNDS rounds (default 3), scenarios interleaved.
 * Needs scripts/setup-test-env.sh (Podman, its API socket, the test images).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Broker } from '../lib/broker/index.js';
import { generateEd25519 } from '../lib/ssh-keys.js';
import { connectEngine, type Engine } from '../providers/container/engine.js';

const run = promisify(execFile);
const SSHD_IMAGE = 'localhost/hostbroker-sshd:bookworm';
const BUSYBOX_IMAGE = 'localhost/hostbroker-busybox:latest';
const N = Number(process.env.BENCH_COUNT ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const LABEL = 'hostbroker.bench';

type Ssh2 = typeof import('ssh2');
const ssh2: Ssh2 = ((await import('ssh2')) as unknown as { default: Ssh2 }).default;
const keys = await generateEd25519();

/** Logs in and runs `true`, retrying until it works. */
async function untilTrue(port: number, deadlineMs = 120_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      await new Promise<void>((resolve, reject) => {
        const client = new ssh2.Client();
        const fail = (e: Error) => {
          client.end();
          reject(e);
        };
        client.once('error', fail);
        client.once('ready', () => {
          client.exec('true', (err, ch) => {
            if (err) return fail(err);
            ch.on('close', (code: number) => {
              client.end();
              code === 0 ? resolve() : reject(new Error(`exit ${code}`));
            });
            ch.resume();
          });
        });
        client.connect({ host: '127.0.0.1', port, username: 'root', privateKey: keys.private, readyTimeout: 5000 });
      });
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function removeLabelled(engine: Engine): Promise<void> {
  const list = await engine.docker.listContainers({ all: true, filters: { label: [LABEL] } });
  await Promise.all(
    list.map(async (c) => {
      const ctr = engine.docker.getContainer(c.Id);
      await ctr.kill().catch(() => undefined);
      await ctr.remove({ force: true, v: true }).catch(() => undefined);
    }),
  );
}

/** Raw engine: `podman run -d` ×N in parallel, then poll until SSH runs `true` on each. */
async function raw(engine: Engine): Promise<number> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: N }, async () => {
      const { stdout } = await run('podman', [
        'run',
        '-d',
        '--label',
        LABEL,
        '-p',
        '127.0.0.1::22',
        '-e',
        `HOSTBROKER_AUTHORIZED_KEY=${keys.public}`,
        SSHD_IMAGE,
      ]);
      const id = stdout.trim();
      const { stdout: port } = await run('podman', ['port', id, '22/tcp']);
      await untilTrue(Number(port.trim().split(':').pop()));
    }),
  );
  const ms = performance.now() - started;
  await removeLabelled(engine);
  return ms;
}

/** testcontainers-node starting the same N containers (listening-port wait), then SSH `true`. */
async function testcontainers(engine: Engine): Promise<number> {
  process.env.DOCKER_HOST ??= engine.where;
  process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  const { GenericContainer, Wait } = await import('testcontainers');
  const started = performance.now();
  const containers = await Promise.all(
    Array.from({ length: N }, async () => {
      const c = await new GenericContainer(SSHD_IMAGE)
        .withExposedPorts(22)
        .withEnvironment({ HOSTBROKER_AUTHORIZED_KEY: keys.public })
        .withLabels({ [LABEL]: 'testcontainers' })
        .withWaitStrategy(Wait.forListeningPorts())
        .start();
      await untilTrue(c.getMappedPort(22));
      return c;
    }),
  );
  const ms = performance.now() - started;
  await Promise.all(containers.map((c) => c.stop({ timeout: 0 }).catch(() => undefined)));
  await removeLabelled(engine);
  return ms;
}

/** hostbroker: checkout of N SSH hosts (concurrently), then `execute('true')` on all. */
async function hostbroker(image: string, ssh: boolean, timings: { checkin: number[] }): Promise<number> {
  const directory = await mkdtemp(join(tmpdir(), 'hb-bench-'));
  const broker = new Broker({ directory, settings: { container: { namePrefix: 'hb-bench' } } as never });
  try {
    const started = performance.now();
    const group = await broker.checkout({ provider: 'container', image, ssh, count: N, concurrency: N, labels: { [LABEL]: 'hostbroker' } });
    const results = await group.execute('true');
    const ms = performance.now() - started;
    if (results.some((r) => r.status !== 0)) throw new Error('a host did not answer true');
    const c = performance.now();
    await group.checkin();
    timings.checkin.push(performance.now() - c);
    return ms;
  } finally {
    await broker.close();
    await rm(directory, { recursive: true, force: true });
  }
}

/** Raw engine for exec hosts: `podman run -d` ×N, then `podman exec true` on each. */
async function rawExec(engine: Engine): Promise<number> {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: N }, async () => {
      const { stdout } = await run('podman', ['run', '-d', '--label', LABEL, BUSYBOX_IMAGE]);
      await run('podman', ['exec', stdout.trim(), 'true']);
    }),
  );
  const ms = performance.now() - started;
  await removeLabelled(engine);
  return ms;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  const engine = await connectEngine({});
  await removeLabelled(engine);
  const t = { hbSsh: [] as number[], raw: [] as number[], tc: [] as number[], hbExec: [] as number[], rawExec: [] as number[] };
  const checkins = { ssh: { checkin: [] as number[] }, exec: { checkin: [] as number[] } };
  console.log(
    `engine ${engine.where}; ${N} hosts; ${ROUNDS} round(s); load average ${(await import('node:os'))
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  const scenarios: Array<[keyof typeof t, () => Promise<number>]> = [
    ['raw', () => raw(engine)],
    ['hbSsh', () => hostbroker(SSHD_IMAGE, true, checkins.ssh)],
    ['tc', () => testcontainers(engine)],
    ['rawExec', () => rawExec(engine)],
    ['hbExec', () => hostbroker(BUSYBOX_IMAGE, false, checkins.exec)],
  ];
  for (let round = 0; round < ROUNDS; round++) {
    // Each round starts one scenario later, so that drift in machine load and the engine's
    // clean-up of the previous scenario hit every scenario alike; a pause lets that clean-up end.
    for (let i = 0; i < scenarios.length; i++) {
      const [key, fn] = scenarios[(i + round) % scenarios.length]!;
      await new Promise((r) => setTimeout(r, 3000));
      t[key].push(await fn());
    }
    console.log(
      `round ${round + 1}: raw ${fmt(t.raw.at(-1)!)}, hostbroker ${fmt(t.hbSsh.at(-1)!)}, testcontainers ${fmt(t.tc.at(-1)!)}, raw exec ${fmt(t.rawExec.at(-1)!)}, hostbroker exec ${fmt(t.hbExec.at(-1)!)}`,
    );
  }
  const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)])) as Record<keyof typeof t, number>;
  console.log(`\n${N} SSH-ready hosts, until all answer \`true\` (median):`);
  console.log(`  raw podman run -d + ssh poll   ${fmt(m.raw)}`);
  console.log(`  testcontainers 11              ${fmt(m.tc)}`);
  console.log(
    `  hostbroker checkout + execute  ${fmt(m.hbSsh)}   ${(m.hbSsh / m.raw).toFixed(2)}x raw (target <= 1.15x), ${(m.hbSsh / m.tc).toFixed(2)}x testcontainers (target < 1)`,
  );
  console.log(`  hostbroker checkin of ${N}        ${fmt(median(checkins.ssh.checkin))}`);
  console.log(`${N} exec-session hosts (busybox), until all answer \`true\` (median):`);
  console.log(`  raw podman run -d + podman exec ${fmt(m.rawExec)}`);
  console.log(`  hostbroker checkout + execute   ${fmt(m.hbExec)}   ${(m.hbExec / m.rawExec).toFixed(2)}x raw`);
  console.log(`  hostbroker checkin of ${N}         ${fmt(median(checkins.exec.checkin))}`);
}

await main();
