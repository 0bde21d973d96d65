/**
 * The `static` provider against a real sshd: choosing by name, group and labels, reservation,
 * checkin freeing the machine, clear errors, and processes racing for the same machines.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Broker, ProviderError, UserInputError } from '../../lib/index.js';
import { startSshd, sshdAvailable, type Sshd } from '../helpers/sshd.js';
import { inventoryOf } from '../helpers/inventory.js';

const run = promisify(execFile);

function machines(sshd: Sshd) {
  const common = { hostname: sshd.host, username: sshd.username, privateKeyPath: sshd.privateKeyPath };
  // Two entries for one sshd: the provider tells machines apart by address, so use two ports.
  return [
    { name: 'db1', ...common, port: sshd.port, groups: ['db'], labels: { arch: 'x86_64' } },
    { name: 'web1', hostname: '127.0.0.2', port: 2201, username: 'nobody', groups: ['web'], labels: { arch: 'arm64' } },
  ];
}

describe.skipIf(!sshdAvailable())('static provider', () => {
  let dir: string;
  let sshd: Sshd;
  let broker: Broker;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hb-static-'));
    sshd = await startSshd();
    broker = new Broker({ directory: dir, settings: { static: { hosts: machines(sshd) } } });
  });
  afterAll(async () => {
    await broker?.[Symbol.asyncDispose]();
    await sshd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('hands out the matching machine, reserves it until checkin, and reaches it over SSH', async () => {
    const host = await broker.checkout({ provider: 'static', group: 'db' });
    expect(host.name).toBe('db1');
    expect(host.record.providerId).toBe('db1');
    expect((await host.execute('echo reached')).stdout.trim()).toBe('reached');

    // Taken: a second request for it fails and says who holds it.
    const taken = await broker.checkout({ provider: 'static', name: 'db1' }).catch((e: unknown) => e);
    expect(taken).toBeInstanceOf(ProviderError);
    expect((taken as Error).message).toMatch(/all 1 machine\(s\) matching name=db1 are taken: db1 by \S+ \(record hb-/);
    expect((taken as Error).message).toContain(host.id);
    expect((await inventoryOf(broker).list()).map((h) => h.name)).toEqual(['db1']); // the failed attempt left no record

    await host.checkin();
    const again = await broker.checkout({ provider: 'static', labels: { arch: 'x86_64' }, waitForSsh: false });
    expect(again.name).toBe('db1');
    await again.checkin();
  });

  it('matches by labels and says which machines exist when none match', async () => {
    const arm = await broker.checkout({ provider: 'static', labels: { arch: 'arm64' }, waitForSsh: false });
    expect(arm.name).toBe('web1');
    expect(arm.record.connection).toMatchObject({ kind: 'ssh', host: '127.0.0.2', port: 2201, username: 'nobody' });
    await arm.checkin();
    const none = await broker.checkout({ provider: 'static', group: 'gpu' }).catch((e: unknown) => e);
    expect(none).toBeInstanceOf(UserInputError);
    expect((none as Error).message).toMatch(/no static machine matches group=gpu.*db1 \(groups db; labels arch=x86_64\), web1/);
  });

  it('tells the machines and their holders through execute and describe', async () => {
    const h = await broker.checkout({ provider: 'static', name: 'web1', waitForSsh: false });
    const list = (await broker.execute({ provider: 'static', action: 'machines' })) as Array<{ name: string; heldBy: { record: string } | null }>;
    expect(list.map((m) => [m.name, m.heldBy?.record ?? null])).toEqual([
      ['db1', null],
      ['web1', h.id],
    ]);
    expect(await broker.describeProvider('static', 'db')).toMatchObject({ free: 1, machines: [{ name: 'db1' }] });
    await h.checkin();
  });

  it('gives a machine listed by two instances to one of them at a time', async () => {
    const shared = new Broker({
      directory: dir,
      settings: { static: { instances: { lab: { default: true, hosts: machines(sshd) }, perf: { hosts: machines(sshd).slice(0, 1) } } } },
    });
    const h = await shared.checkout({ provider: 'static', instance: 'lab', name: 'db1', waitForSsh: false });
    const taken = await shared.checkout({ provider: 'static', instance: 'perf', name: 'db1', waitForSsh: false }).catch((e: unknown) => e);
    expect(taken).toBeInstanceOf(ProviderError);
    expect((taken as Error).message).toContain(h.id);
    await h.checkin();
    const other = await shared.checkout({ provider: 'static', instance: 'perf', name: 'db1', waitForSsh: false });
    await other.checkin();
    await shared.close();
  });

  it('never gives one machine to two processes racing for two machines', async () => {
    const raceDir = await mkdtemp(join(tmpdir(), 'hb-static-race-'));
    await writeFile(join(raceDir, 'broker_settings.yaml'), stringify({ static: { hosts: machines(sshd) } }));
    const script = join(raceDir, 'race.mts');
    const lib = resolve('lib/index.ts');
    await writeFile(
      script,
      `import { Broker } from ${JSON.stringify(lib)};
const broker = new Broker({ directory: process.argv[2] });
try {
  const h = await broker.checkout({ provider: 'static', waitForSsh: false });
  console.log(JSON.stringify({ ok: h.name }));
} catch (e) {
  console.log(JSON.stringify({ error: e.message }));
}
await broker.close();
`,
    );
    const runs = await Promise.all(
      [0, 1, 2].map(() =>
        run(process.execPath, ['--import', 'tsx', script, raceDir], { cwd: resolve('.') }).then(
          (r) => JSON.parse(r.stdout.trim().split('\n').pop()!) as { ok?: string; error?: string },
        ),
      ),
    );
    const got = runs.flatMap((r) => (r.ok ? [r.ok] : []));
    expect(got.sort()).toEqual(['db1', 'web1']);
    const errors = runs.flatMap((r) => (r.error ? [r.error] : []));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/all 2 machine\(s\) matching any machine are taken/);
    const raced = new Broker({ directory: raceDir });
    expect((await inventoryOf(raced).list()).map((h) => h.name).sort()).toEqual(['db1', 'web1']);
    await raced.checkin({ all: true });
    expect(await inventoryOf(raced).list()).toEqual([]);
    await raced.close();
    await rm(raceDir, { recursive: true, force: true });
  });
});
