import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Broker } from '../lib/broker/index.js';
import { AbortedError, PartialFailureError, ProviderError, SettingsError, UserInputError } from '../lib/errors.js';
import { defineProvider, type HostContext, type ProviderImplementation } from '../lib/provider.js';
import { local } from '../providers/local/definition.js';
import { Host } from '../hosts/host.js';
import { HostGroup } from '../hosts/host-group.js';
import { sshdProvider } from './helpers/providers.js';
import { sshdAvailable, startSshd, type Sshd } from './helpers/sshd.js';
import { localFolders, localServers } from './reliability/util.js';
import { inventoryOf } from './helpers/inventory.js';

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
    // What did succeed (and was released again) is data too.
    expect((error as PartialFailureError).succeeded.map((r) => (r as { state: string }).state)).toEqual(['ready', 'ready']);
    expect((error as PartialFailureError).toJSON().succeeded).toHaveLength(2);
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
    expect(error.succeeded.map((r) => (r as { name: string }).name).sort()).toEqual(['good-0', 'good-1']);
    expect((await broker.inventory()).map((r) => r.name)).toEqual(['bad']);
  });

  it('checkin with a signal: an abort starts no further release, finishes those under way, and says what is left', async () => {
    const broker = new Broker({ directory: await tmp('hb-b-'), providers: [sshdProvider(sshd)] });
    const group = await broker.checkout({ provider: 'sshd', name: 'cut', count: 4 });
    const controller = new AbortController();
    let seen = 0;
    const watched = new Broker({
      directory: broker.directory,
      providers: [sshdProvider(sshd)],
      onProgress: () => ++seen === 1 && controller.abort(new Error('enough')),
    });
    const error = (await watched.checkin({ all: true }, { concurrency: 1, signal: controller.signal }).catch((e: unknown) => e)) as AbortedError;
    expect(error).toBeInstanceOf(AbortedError);
    expect(error).toMatchObject({ code: 'ABORTED', released: ['cut-0'], neverStarted: 3 });
    const left = await broker.inventory();
    expect(left.map((r) => r.name)).toEqual(['cut-1', 'cut-2', 'cut-3']);
    expect([...error.kept].sort()).toEqual(left.map((r) => r.id).sort());
    expect(error.message).toContain(`hostbroker checkin ${error.kept.join(' ')}`);
    await broker.checkin(group);
    expect(await broker.inventory()).toEqual([]);
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

/** Resolves once `check` is true, looking every 10 ms. */
async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((r) => setTimeout(r, 10));
}

/**
 * The real `local` provider, watched: counts checkouts, can hold each checkout (or the n-th ones:
 * `hold(call)`, counting from 1) with its host made until its `ctx.signal` aborts, and can refuse
 * to release chosen hosts.
 */
function watchedLocal(behaviour: { hold?: boolean | ((call: number) => boolean); failRelease?: Set<string> } = {}) {
  const seen: { checkouts: number; signals: AbortSignal[] } = { checkouts: 0, signals: [] };
  const definition = defineProvider({
    ...local,
    load: async () => {
      const impl = (await local.load()) as ProviderImplementation;
      const watched: ProviderImplementation = {
        ...impl,
        async checkout(args, target, ctx: HostContext) {
          const call = ++seen.checkouts;
          seen.signals.push(ctx.signal);
          const made = await impl.checkout(args, target, ctx);
          if (typeof behaviour.hold === 'function' ? behaviour.hold(call) : behaviour.hold) {
            // A slow provider that honours the signal: it gives up once told to.
            await new Promise((r) => (ctx.signal.aborted ? r(undefined) : ctx.signal.addEventListener('abort', r, { once: true })));
            throw new ProviderError('local', 'gave up: the checkout was aborted');
          }
          return made;
        },
        async release(record, ctx) {
          if (behaviour.failRelease?.has(record.name)) throw new ProviderError('local', `release of ${record.name} refused on purpose`);
          return impl.release(record, ctx);
        },
      };
      return watched;
    },
  });
  return { definition: definition as typeof local, seen };
}

// A bundle that keeps every checkout running (hosts made, script sleeping) until it is aborted.
const SLOW = { bundles: { slow: { scripts: [{ run: 'sleep 45' }] } } };

describe('aborting a checkout with a signal (local provider)', { timeout: 120_000 }, () => {
  it('stops starting hosts, releases the running ones, rejects saying so, and leaves nothing behind', async () => {
    const directory = await tmp('hb-abort-');
    const broker = new Broker({ directory, settings: SLOW });
    const controller = new AbortController();
    const pending = broker
      .checkout({ provider: 'local', name: 'cut', count: 4, concurrency: 2, bundles: ['slow'], signal: controller.signal })
      .catch((e: unknown) => e);
    await until(async () => (await localFolders(directory)).length === 2); // two running, two waiting for a slot
    controller.abort(new Error('stop now'));
    const error = await pending;
    expect(error).toBeInstanceOf(AbortedError);
    expect(error).toMatchObject({ code: 'ABORTED', neverStarted: 2, kept: [] });
    expect((error as AbortedError).released).toHaveLength(2);
    expect((error as AbortedError).reason).toEqual(new Error('stop now'));
    expect((error as Error).message).toMatch(/^checkout of 4 host\(s\) from local was aborted \(stop now\): released 2 \(cut-\d, cut-\d\); 2 never started\.$/);
    expect(await broker.inventory()).toEqual([]);
    expect(await localFolders(directory)).toEqual([]);
    expect(await localServers(directory)).toEqual([]);
    await broker.close();
  });

  it('tells running provider checkouts through ctx.signal, then releases what they made', async () => {
    const directory = await tmp('hb-abort-');
    const { definition, seen } = watchedLocal({ hold: true });
    const broker = new Broker({ directory, providers: [definition] });
    const controller = new AbortController();
    const pending = broker.checkout({ provider: 'local', count: 3, signal: controller.signal }).catch((e: unknown) => e);
    await until(async () => seen.checkouts === 3 && (await localServers(directory)).length === 3);
    expect(seen.signals.some((s) => s.aborted)).toBe(false);
    controller.abort();
    const error = await pending;
    expect(error).toBeInstanceOf(AbortedError);
    expect(error).toMatchObject({ code: 'ABORTED', neverStarted: 0, kept: [] });
    expect((error as AbortedError).released).toHaveLength(3);
    expect((error as Error).message).toMatch(/^checkout of 3 host\(s\) from local was aborted: released 3 \(/);
    expect(seen.signals.every((s) => s.aborted)).toBe(true);
    expect(await broker.inventory()).toEqual([]);
    expect(await localFolders(directory)).toEqual([]);
    expect(await localServers(directory)).toEqual([]);
    await broker.close();
  });

  it('keeps the record of a host whose release fails, so checkin can finish the job', async () => {
    const directory = await tmp('hb-abort-');
    const failRelease = new Set(['keep-1']);
    const { definition } = watchedLocal({ failRelease });
    const broker = new Broker({ directory, settings: SLOW, providers: [definition] });
    const controller = new AbortController();
    const pending = broker.checkout({ provider: 'local', name: 'keep', count: 2, bundles: ['slow'], signal: controller.signal }).catch((e: unknown) => e);
    // Both hosts made (records ready) and sleeping in their bundle.
    await until(async () => (await inventoryOf(broker).list()).filter((h) => h.state === 'ready').length === 2);
    controller.abort(new Error('enough'));
    const error = await pending;
    expect(error).toBeInstanceOf(AbortedError);
    const left = await broker.inventory();
    expect(left.map((r) => r.name)).toEqual(['keep-1']);
    expect(error).toMatchObject({ released: ['keep-0'], kept: [left[0]!.id], neverStarted: 0 });
    expect(left[0]!.lastError).toMatch(/release of keep-1 refused on purpose/);
    expect((error as Error).message).toContain(
      `was aborted (enough): released 1 (keep-0); kept 1 in the inventory because releasing failed (keep-1: [local] release of keep-1 refused on purpose); check them in later with \`hostbroker checkin ${left[0]!.id}\``,
    );
    expect(await localServers(directory)).toHaveLength(1); // the kept host is still there
    failRelease.clear();
    await broker.checkin('keep-1');
    expect(await broker.inventory()).toEqual([]);
    expect(await localFolders(directory)).toEqual([]);
    expect(await localServers(directory)).toEqual([]);
    await broker.close();
  });

  it('duplicate: an abort while copying the second host also releases the copy of the first', async () => {
    const directory = await tmp('hb-abort-');
    // The originals come from a plain Broker; the copying one holds its second checkout.
    const plain = new Broker({ directory });
    const a = await plain.checkout({ provider: 'local', name: 'orig-a' });
    const b = await plain.checkout({ provider: 'local', name: 'orig-b', files: { 'b.txt': 'b' } });
    await plain.close();
    const { definition, seen } = watchedLocal({ hold: (call) => call === 2 });
    const broker = new Broker({ directory, providers: [definition] });
    const controller = new AbortController();
    const pending = broker.duplicate([a.record, b.record], { signal: controller.signal }).catch((e: unknown) => e);
    // The copy of a is made and handed back; the copy of b is made and held.
    await until(async () => seen.checkouts === 2 && (await localServers(directory)).length === 4);
    expect((await broker.inventory()).filter((r) => r.state === 'ready')).toHaveLength(3);
    controller.abort(new Error('stop copying'));
    const error = await pending;
    expect(error).toBeInstanceOf(AbortedError);
    expect((error as AbortedError).released).toHaveLength(2); // the held copy of b, and the copy of a made before
    expect((error as Error).message).toMatch(
      /^checkout of 1 host\(s\) from local was aborted \(stop copying\): released 1 \(local-[0-9a-f]+\)\. Also, the 1 copies made before were released\.$/,
    );
    expect(seen.signals[1]!.aborted).toBe(true);
    expect((await broker.inventory()).map((r) => r.name).sort()).toEqual(['orig-a', 'orig-b']);
    expect((await localFolders(directory)).sort()).toEqual([a.id, b.id].sort());
    expect(await localServers(directory)).toHaveLength(2);
    await broker.checkin({ all: true });
    expect(await localFolders(directory)).toEqual([]);
    expect(await localServers(directory)).toEqual([]);
    await broker.close();
  });

  it('many hosts on one signal: every running checkout is told, with no listener-leak warning', async () => {
    const signals: AbortSignal[] = [];
    const released: string[] = [];
    const impl: ProviderImplementation = {
      async checkout(_args, { record }, ctx) {
        signals.push(ctx.signal);
        await new Promise((r) => ctx.signal.addEventListener('abort', r, { once: true }));
        throw new ProviderError('held', `${record.name} gave up`);
      },
      async release(record) {
        released.push(record.id);
      },
    };
    const held = defineProvider({ name: 'held', description: 'test: waits for its signal', args: z.strictObject({}), load: async () => impl });
    const broker = new Broker({ directory: await tmp('hb-abort-'), providers: [held] });
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const controller = new AbortController();
      const pending = broker.checkout({ provider: 'held', count: 30, concurrency: 30, signal: controller.signal } as never).catch((e: unknown) => e);
      await until(() => signals.length === 30);
      controller.abort();
      expect(await pending).toBeInstanceOf(AbortedError);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on a later tick
    } finally {
      process.off('warning', onWarning);
    }
    expect(signals.every((s) => s.aborted)).toBe(true);
    expect(released).toHaveLength(30);
    expect(warnings.filter((w) => w.includes('MaxListeners'))).toEqual([]);
    expect(await broker.inventory()).toEqual([]);
  });

  it('an already aborted signal rejects at once: no provider call, inventory unchanged', async () => {
    const directory = await tmp('hb-abort-');
    const { definition, seen } = watchedLocal();
    const broker = new Broker({ directory, providers: [definition] });
    await using kept = await broker.checkout({ provider: 'local', name: 'before' });
    const before = await inventoryOf(broker).snapshot();
    const error = await broker.checkout({ provider: 'local', count: 3, signal: AbortSignal.abort(new Error('too late')) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortedError);
    expect(error).toMatchObject({ code: 'ABORTED', released: [], kept: [], neverStarted: 0 });
    expect((error as Error).message).toBe('checkout of 3 host(s) from local was aborted before it started (too late); nothing was created.');
    expect(seen.checkouts).toBe(1);
    expect(await inventoryOf(broker).snapshot()).toEqual(before);
    expect(await localFolders(directory)).toEqual([kept.id]);
  });
});

describe('sync and an interrupted release', () => {
  it('keeps a releasing record releasing while the provider still has the host, and checkin finishes it', async () => {
    const directory = await tmp('hb-sync-releasing-');
    const broker = new Broker({ directory });
    try {
      const host = await broker.checkout({ provider: 'local' });
      // What a release cut off by Ctrl-C or a kill leaves: the record says releasing, the host is still there.
      await inventoryOf(broker).patch(host.id, { state: 'releasing' });
      const result = await broker.sync('local');
      expect(result.updated.map((h) => h.id)).toEqual([host.id]);
      expect((await broker.inventory()).map((h) => [h.id, h.state])).toEqual([[host.id, 'releasing']]);
      await broker.checkin(host.id);
      expect(await broker.inventory()).toEqual([]);
      expect(await localFolders(directory)).toEqual([]);
      expect(await localServers(directory)).toEqual([]);
    } finally {
      await broker.close();
    }
  });
});
