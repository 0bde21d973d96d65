import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../lib/broker.js';
import { PartialFailureError, ProviderError, SettingsError, UserInputError } from '../lib/errors.js';
import { Host } from '../hosts/host.js';
import { HostGroup } from '../hosts/host-group.js';
import { sshdProvider } from './helpers/providers.js';
import { sshdAvailable, startSshd, type Sshd } from './helpers/sshd.js';

const run = promisify(execFile);
const tmp = (p: string) => mkdtemp(join(tmpdir(), p));

describe.skipIf(!sshdAvailable())('Broker with hosts on a real sshd', () => {
  let sshd: Sshd;
  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  it('runs setup after checkout and teardown before release, in that order', async () => {
    const events: string[] = [];
    const released: string[] = [];
    class Tracked extends Host {
      override async setup() {
        events.push(`setup:${(await this.execute('echo ready')).stdout.trim()}`);
      }
      override async teardown() {
        events.push(`teardown:${released.length}`);
      }
    }
    const broker = new Broker({ directory: await tmp('hb-b-'), providers: [sshdProvider(sshd, { released })] });
    {
      await using host = await broker.checkout({ provider: 'sshd', hostClass: Tracked });
      expect(host).toBeInstanceOf(Tracked);
      expect(events).toEqual(['setup:ready']);
    }
    expect(events).toEqual(['setup:ready', 'teardown:0']);
    expect(released).toHaveLength(1);
    expect(await broker.inventory()).toEqual([]);
  });

  it('still checks in when teardown throws, and surfaces the teardown error', async () => {
    const released: string[] = [];
    class Broken extends Host {
      override async teardown() {
        throw new Error('teardown exploded');
      }
    }
    const broker = new Broker({ directory: await tmp('hb-b-'), providers: [sshdProvider(sshd, { released })] });
    const host = await broker.checkout({ provider: 'sshd', hostClass: Broken });
    const error = await host[Symbol.asyncDispose]().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PartialFailureError);
    expect((error as Error).message).toContain('teardown exploded');
    expect(released).toEqual([host.id]);
    expect(await broker.inventory()).toEqual([]);
  });

  it('surfaces both errors when teardown and release fail, and keeps the record', async () => {
    class Broken extends Host {
      override async teardown() {
        throw new Error('teardown exploded');
      }
    }
    const failRelease = new Set(['keepme']);
    const broker = new Broker({ directory: await tmp('hb-b-'), providers: [sshdProvider(sshd, { failRelease })] });
    const host = await broker.checkout({ provider: 'sshd', name: 'keepme', hostClass: Broken });
    const error = (await host.checkin().catch((e: unknown) => e)) as PartialFailureError;
    expect(error.failures.map((f) => f.error.message).join(' | ')).toMatch(/teardown exploded.*release of keepme refused/);
    const records = await broker.inventory();
    expect(records).toHaveLength(1);
    expect(records[0]?.lastError).toContain('refused on purpose');
    failRelease.clear();
    await host.checkin(); // a retry releases; teardown does not run twice
    expect(await broker.inventory()).toEqual([]);
  });

  it('aborts a multi-host checkout: the hosts that succeeded are released and each failure is listed', async () => {
    const released: string[] = [];
    const broker = new Broker({ directory: await tmp('hb-b-'), providers: [sshdProvider(sshd, { failAt: [1, 3], released })] });
    const error = await broker.checkout({ provider: 'sshd', count: 4 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PartialFailureError);
    const failures = (error as PartialFailureError).failures;
    expect(failures.map((f) => f.error.message).sort()).toEqual(['[sshd] host #1 failed on purpose', '[sshd] host #3 failed on purpose']);
    expect(released).toHaveLength(4); // two good hosts, and the two failed intents
    expect(await broker.inventory()).toEqual([]);
  });

  it("keeps what succeeded under onPartialFailure: 'keep' and reports the failures", async () => {
    const broker = new Broker({ directory: await tmp('hb-b-'), providers: [sshdProvider(sshd, { failAt: [0] })] });
    await using group = await broker.checkout({ provider: 'sshd', count: 3, onPartialFailure: 'keep' });
    expect(group).toBeInstanceOf(HostGroup);
    expect(group).toHaveLength(2);
    expect(group.failures[0]?.error).toBeInstanceOf(ProviderError);
    expect((await broker.inventory()).map((r) => r.id).sort()).toEqual(group.map((h) => h.id).sort());
  });

  it('checkin of many: one failed release does not stop the others, and the error names it', async () => {
    const failRelease = new Set(['bad']);
    const broker = new Broker({ directory: await tmp('hb-b-'), providers: [sshdProvider(sshd, { failRelease })] });
    await broker.checkout({ provider: 'sshd', name: 'good', count: 2 });
    await broker.checkout({ provider: 'sshd', name: 'bad' });
    const error = (await broker.checkin({ all: true }).catch((e: unknown) => e)) as PartialFailureError;
    expect(error).toBeInstanceOf(PartialFailureError);
    expect(error.failures.map((f) => f.target)).toEqual(['bad']);
    expect((await broker.inventory()).map((r) => r.name)).toEqual(['bad']);
  });

  it('duplicates a host with the same recipe, and disposing the Broker checks in what it holds', async () => {
    const directory = await tmp('hb-b-');
    const broker = new Broker({ directory, providers: [sshdProvider(sshd)] });
    const host = await broker.checkout({ provider: 'sshd', tag: 'blue' });
    const copies = await broker.duplicate(host, { count: 2 });
    expect(copies).toHaveLength(2);
    for (const c of copies) expect(c.record.recipe.args).toEqual({ tag: 'blue' });
    expect(await broker.inventory()).toHaveLength(3);
    await broker[Symbol.asyncDispose]();
    expect(await new Broker({ directory, providers: [sshdProvider(sshd)] }).inventory()).toEqual([]);
  });

  it('reconstructs a live host from its record in another process', async () => {
    const directory = await tmp('hb-b-');
    const broker = new Broker({ directory });
    await using host = await broker.checkout({ provider: 'local' });
    await host.session.write('made in the parent', 'note.txt');
    const script = `
      import { Broker } from ${JSON.stringify(join(process.cwd(), 'lib/index.ts'))};
      const broker = new Broker({ directory: ${JSON.stringify(directory)} });
      const [record] = await broker.inventory({ filter: 'id=${host.id}' });
      const again = broker.reconstruct(record);
      process.stdout.write((await again.execute('cat note.txt')).stdout);
      await broker.close();
    `;
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: process.cwd() });
    expect(stdout).toBe('made in the parent');
  });

  it('extends a lease where the provider supports it', async () => {
    const broker = new Broker({ directory: await tmp('hb-b-') });
    await using host = await broker.checkout({ provider: 'local', lease: '1h' });
    const before = Date.parse(host.record.leaseExpires!);
    await host.extend({ lease: '3h' });
    expect(Date.parse(host.record.leaseExpires!) - before).toBeGreaterThan(90 * 60_000);
  });
});

describe('bad input gets the right error class and a message that says what to do', () => {
  it('an unknown provider lists the known ones', async () => {
    const broker = new Broker({ directory: await tmp('hb-bad-') });
    const error = await broker.checkout({ provider: 'nope' } as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserInputError);
    expect((error as Error).message).toMatch(/unknown provider `nope`; known providers: .*local/);
  });

  it('an unknown nick lists the known ones', async () => {
    const broker = new Broker({ directory: await tmp('hb-bad-'), settings: { nicks: { dev: { provider: 'local' } } } });
    await expect(broker.checkout({ nick: 'prod' })).rejects.toThrow(/no nick `prod`; known nicks: dev/);
  });

  it('an argument the provider does not take is named, with the accepted ones', async () => {
    const broker = new Broker({ directory: await tmp('hb-bad-') });
    const error = await broker.checkout({ provider: 'local', imagee: 'x' } as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserInputError);
    expect((error as Error).message).toMatch(/imagee.*Accepted arguments: name, files/s);
    expect(await broker.inventory()).toEqual([]);
  });

  it('a bad filter says which clause and how to write one', async () => {
    const broker = new Broker({ directory: await tmp('hb-bad-') });
    await expect(broker.inventory({ filter: 'name~web' })).rejects.toThrow(UserInputError);
    await expect(broker.inventory({ filter: 'name~web' })).rejects.toThrow(/"name~web" has no key and operator/);
  });

  it('a bad settings file names the key and why', async () => {
    const directory = await tmp('hb-bad-');
    await writeFile(join(directory, 'broker_settings.yaml'), 'ssh:\n  port: "twenty-two"\n');
    expect(() => new Broker({ directory })).toThrow(SettingsError);
    expect(() => new Broker({ directory })).toThrow(/ssh\.port: .*number/);
  });

  it('an args file that is not a mapping is refused before anything is created', async () => {
    const directory = await tmp('hb-bad-');
    const file = join(directory, 'args.yaml');
    await writeFile(file, '- just\n- a list\n');
    const broker = new Broker({ directory });
    await expect(broker.checkout({ provider: 'local', argsFile: file })).rejects.toThrow(/must hold a mapping/);
    expect(await broker.inventory()).toEqual([]);
  });

  it('args files and nicks merge, explicit arguments winning', async () => {
    const directory = await tmp('hb-args-');
    const file = join(directory, 'args.json');
    await writeFile(file, JSON.stringify({ name: 'from-file', files: { 'a.txt': 'file' } }));
    const broker = new Broker({ directory, settings: { nicks: { box: { provider: 'local', name: 'from-nick' } } } });
    await using host = await broker.checkout({ nick: 'box', argsFile: file, name: 'explicit' });
    expect(host.name).toBe('explicit');
    expect(host.record.recipe).toMatchObject({ nick: 'box', args: { name: 'explicit', files: { 'a.txt': 'file' } } });
    expect((await host.execute('cat a.txt')).stdout).toBe('file');
  });

  it('checkin of a name that is not in the inventory says how to list it', async () => {
    const broker = new Broker({ directory: await tmp('hb-bad-') });
    await expect(broker.checkin('ghost')).rejects.toThrow(/no host `ghost` in the inventory/);
  });
});
