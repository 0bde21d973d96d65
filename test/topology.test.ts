/**
 * Topologies: the seed's metadata on the `local` provider and a `static` machine (a real sshd),
 * the Ansible inventory layout, the SSH config with real OpenSSH, destroy from another Broker,
 * abort and retry strategies with a provider that fails on purpose, and provider precedence.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { Broker, PartialFailureError, UserInputError } from '../lib/index.js';
import { AbortedError, ProviderError } from '../lib/errors.js';
import { defineProvider, type ProviderImplementation } from '../lib/provider.js';
import { startSshd, sshdAvailable, type Sshd } from './helpers/sshd.js';
import { inventoryOf } from './helpers/inventory.js';

const run = promisify(execFile);

const SEED = `
network: IPv4
ansible_inventory:
  ansible_become: false
domains:
- name: testdomain.test
  type: ipa
  hosts:
  - name: master.testdomain.test
    role: master
    group: ipaserver
    os: fedora-31
    meta_restraint_id: 9
  - name: client.testdomain.test
    role: client
    group: ipaclient
    os: fedora-30
    provider: static
    ansible_inventory:
      ipa_client_mode: enrolled
`;

type Inventory = { all: { hosts: Record<string, Record<string, unknown>>; children: Record<string, any>; vars?: Record<string, unknown> } };

describe.skipIf(!sshdAvailable())('the seed topology on local and static hosts', () => {
  let dir: string;
  let sshd: Sshd;
  let broker: Broker;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hb-topo-'));
    sshd = await startSshd();
    broker = new Broker({
      directory: dir,
      settings: {
        static: {
          hosts: [{ name: 'lab1', hostname: sshd.host, port: sshd.port, username: sshd.username, privateKeyPath: sshd.privateKeyPath, groups: ['clients'] }],
        },
      },
    });
  });
  afterAll(async () => {
    await broker?.close();
    await sshd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('provisions both hosts, renders mrack’s inventory layout, an ssh config OpenSSH uses, and destroys from another Broker', async () => {
    const provisioning = {
      default_provider: 'local',
      static: { flavors: { ipaclient: 'clients' } },
      inventory_layout: { all: { children: { ipa: { children: { ipaserver: {} } } } } },
    };
    const d = await broker.up(SEED, { provisioning, name: 'seed' });
    expect(d.hosts.map((h) => h.provider)).toEqual(['local', 'static']);
    const master = d.byName('master');
    const client = d.byRole('client')[0]!;
    expect(d.byGroup('ipaclient')).toEqual([client]);
    expect(d.byName('client.testdomain.test')).toBe(client);
    expect(() => d.byName('nope')).toThrow(/master\.testdomain\.test, client\.testdomain\.test/);
    expect((await master.execute('echo $HOME')).stdout).toContain(dir);
    expect((await client.execute('echo static-ok')).stdout.trim()).toBe('static-ok');

    const inv = parseYaml(d.ansibleInventory()) as Inventory;
    // The layout's group is used where it is; a missing one is created under all.children.
    expect(inv.all.children.ipa.children.ipaserver.hosts).toEqual({ 'master.testdomain.test': {} });
    expect(inv.all.children.ipaclient.hosts).toEqual({ 'client.testdomain.test': {} });
    expect(inv.all.vars).toEqual({ ansible_become: false });
    const mc = master.record.connection!;
    expect(mc.kind).toBe('ssh');
    expect(inv.all.hosts['master.testdomain.test']).toMatchObject({
      ansible_host: '127.0.0.1',
      ansible_port: mc.kind === 'ssh' ? mc.port : 0,
      ansible_python_interpreter: '/usr/bin/python3',
      meta_fqdn: 'master.testdomain.test',
      meta_os: 'fedora-31',
      meta_role: 'master',
      meta_domain: 'testdomain.test',
      meta_domain_type: 'ipa',
      meta_provider: 'local',
      meta_provider_id: master.record.providerId,
      meta_ip: '127.0.0.1',
      meta_restraint_id: 9,
    });
    expect(inv.all.hosts['client.testdomain.test']).toMatchObject({
      ansible_host: sshd.host,
      ansible_port: sshd.port,
      ansible_user: sshd.username,
      ansible_ssh_private_key_file: sshd.privateKeyPath,
      meta_provider: 'static',
      meta_provider_id: 'lab1',
      meta_role: 'client',
      ipa_client_mode: 'enrolled',
    });

    const cfg = join(dir, 'ssh_config');
    await writeFile(cfg, d.sshConfig());
    for (const alias of ['master', 'client.testdomain.test']) {
      const r = await run('ssh', ['-F', cfg, '-o', 'BatchMode=yes', alias, 'echo openssh-$((40+2))']);
      expect(r.stdout.trim()).toBe('openssh-42');
    }

    const json = d.toJSON();
    expect(json.hosts.map((h) => [h.fqdn, h.role, h.provider])).toEqual([
      ['master.testdomain.test', 'master', 'local'],
      ['client.testdomain.test', 'client', 'static'],
    ]);

    // Another process (here: another Broker on the same directory) finds and destroys it.
    const other = new Broker({ directory: dir, settings: broker.settings });
    const again = await other.deployment('seed');
    expect(again.hosts.map((h) => h.id)).toEqual(d.hosts.map((h) => h.id));
    await again.destroy();
    await other.close();
    const left = await inventoryOf(broker).snapshot();
    expect(left.hosts).toEqual([]);
    expect(left.deployments).toEqual([]);
    await d.destroy(); // already gone: nothing more to do
  });
});

/** A provider for strategy tests: hosts named in `failures` fail that many times (Infinity: always). */
function flaky(name: string, failures: Map<string, number>, calls: string[], released: string[]) {
  const impl: ProviderImplementation<{ name?: string }> = {
    async checkout(args, { record }) {
      const host = args.name ?? record.name;
      calls.push(host);
      const left = failures.get(host) ?? 0;
      if (left > 0) {
        failures.set(host, left - 1);
        throw new ProviderError(name, `${host} failed on purpose`);
      }
      await new Promise((r) => setTimeout(r, 20));
      return { hostname: `${host}.invalid`, providerId: `${name}-${record.id}`, connection: { kind: 'provider' } };
    },
    async release(record) {
      released.push(record.name);
    },
  };
  return defineProvider({
    name,
    description: `test provider ${name}`,
    args: z.strictObject({ name: z.string().optional() }),
    load: async () => impl as ProviderImplementation,
  });
}

/**
 * A provider whose checkouts wait until their `ctx.signal` aborts, then give up (or succeed after
 * 20 s if no abort ever comes, so a missing abort fails an assertion instead of hanging).
 */
function patient(name: string, seen: { signals: AbortSignal[]; entered?: () => void }, released: string[]) {
  const impl: ProviderImplementation<{ name?: string }> = {
    async checkout(args, { record }, ctx) {
      seen.signals.push(ctx.signal);
      seen.entered?.();
      const aborted = await new Promise<boolean>((r) => {
        const timer = setTimeout(() => r(false), 20_000);
        ctx.signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            r(true);
          },
          { once: true },
        );
      });
      if (aborted) throw new ProviderError(name, 'gave up: aborted');
      return { hostname: `${args.name ?? record.name}.invalid`, providerId: record.id, connection: { kind: 'provider' } };
    },
    async release(record) {
      released.push(record.name);
    },
  };
  return defineProvider({
    name,
    description: `test provider ${name}`,
    args: z.strictObject({ name: z.string().optional() }),
    load: async () => impl as ProviderImplementation,
  });
}

/** Resolves once `check` is true, looking every 10 ms. */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 10));
}

function metadata(hosts: Array<{ name: string; provider?: string }>, provider?: string) {
  return { ...(provider ? { provider } : {}), domains: [{ name: 'example.test', hosts }] };
}

describe('deployment strategies', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hb-strat-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('abort: one failure releases every host of every provider, then throws naming the host', async () => {
    const calls: string[] = [];
    const released: string[] = [];
    const failures = new Map([['b2', Infinity]]);
    const broker = new Broker({
      directory: join(dir, 'abort'),
      providers: [flaky('alpha', failures, calls, released), flaky('beta', failures, calls, released)],
    });
    const error = await broker
      .up(
        metadata([
          { name: 'a1', provider: 'alpha' },
          { name: 'a2', provider: 'alpha' },
          { name: 'b1', provider: 'beta' },
          { name: 'b2', provider: 'beta' },
        ]),
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PartialFailureError);
    expect((error as PartialFailureError).failures.map((f) => f.target)).toEqual(['b2.example.test [beta]']);
    // b2's failure stops the checkouts still running: those count as stopped, not as failures.
    const m = /the (\d) that were provisioned(?: and the (\d) whose checkouts were stopped)? have been released/.exec((error as Error).message);
    expect(Number(m?.[1]) + Number(m?.[2] ?? 0)).toBe(3);
    // The three that were made, and b2's own half-made attempt (the Broker cleans up failed checkouts).
    expect(released.sort()).toEqual(['a1', 'a2', 'b1', 'b2']);
    expect(calls.filter((c) => c === 'b2')).toHaveLength(1); // abort never asks again
    const inv = await inventoryOf(broker).snapshot();
    expect(inv.hosts).toEqual([]);
    expect(inv.deployments).toEqual([]);
  });

  it("abort: a failure stops other providers' running checkouts instead of waiting for them", async () => {
    const released: string[] = [];
    let entered!: () => void;
    const slowStarted = new Promise<void>((r) => (entered = r));
    const seen = { signals: [] as AbortSignal[], entered: () => seen.signals.length === 2 && entered() };
    const failing = flaky('beta', new Map([['b1', Infinity]]), [], released);
    const impl = (await failing.load()) as ProviderImplementation<{ name?: string }>;
    const beta = defineProvider({
      ...failing,
      load: async () =>
        ({
          ...impl,
          checkout: async (...a: Parameters<typeof impl.checkout>) => {
            await slowStarted;
            return impl.checkout(...a);
          },
        }) as ProviderImplementation,
    });
    const broker = new Broker({ directory: join(dir, 'stop-others'), providers: [patient('slow', seen, released), beta] });
    const error = await broker
      .up(
        metadata([
          { name: 's1', provider: 'slow' },
          { name: 's2', provider: 'slow' },
          { name: 'b1', provider: 'beta' },
        ]),
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PartialFailureError);
    expect((error as PartialFailureError).failures.map((f) => f.target)).toEqual(['b1.example.test [beta]']);
    expect((error as Error).message).toMatch(/the 0 that were provisioned and the 2 whose checkouts were stopped have been released/);
    expect(seen.signals.map((s) => s.aborted)).toEqual([true, true]);
    expect(released.sort()).toEqual(['b1', 's1', 's2']);
    const inv = await inventoryOf(broker).snapshot();
    expect(inv.hosts).toEqual([]);
    expect(inv.deployments).toEqual([]);
  });

  it("the caller's signal stops every provider, releases what was made, and rejects saying so", async () => {
    const released: string[] = [];
    const seen = { signals: [] as AbortSignal[] };
    const events: string[] = [];
    const broker = new Broker({ directory: join(dir, 'caller-abort'), providers: [patient('slow', seen, released), flaky('alpha', new Map(), [], released)] });
    const controller = new AbortController();
    const pending = broker
      .up(
        metadata([
          { name: 'a1', provider: 'alpha' },
          { name: 's1', provider: 'slow' },
          { name: 's2', provider: 'slow' },
        ]),
        {
          name: 'cut',
          signal: controller.signal,
          onProgress: (e) => events.push(`${e.host}:${e.outcome}`),
        },
      )
      .catch((e: unknown) => e);
    await until(() => seen.signals.length === 2 && events.includes('a1.example.test:ok'));
    controller.abort(new Error('stop'));
    const error = await pending;
    expect(error).toBeInstanceOf(AbortedError);
    expect(error).toMatchObject({ code: 'ABORTED', released: ['a1'], kept: [], neverStarted: 0 });
    expect((error as Error).message).toBe(
      'deployment cut was aborted (stop): 1 host(s) that were provisioned and 2 stopped checkout(s) were released, 0 never started.',
    );
    expect(events.sort()).toEqual(['a1.example.test:ok', 's1.example.test:stopped', 's2.example.test:stopped']);
    expect(released.sort()).toEqual(['a1', 's1', 's2']);
    const inv = await inventoryOf(broker).snapshot();
    expect(inv.hosts).toEqual([]);
    expect(inv.deployments).toEqual([]);

    const calls: string[] = [];
    const before = new Broker({ directory: join(dir, 'caller-abort'), providers: [flaky('alpha', new Map(), calls, released)] });
    await expect(before.up(metadata([{ name: 'a1' }], 'alpha'), { name: 'never', signal: AbortSignal.abort() })).rejects.toThrow(
      /^deployment never was aborted before it started; nothing was created\.$/,
    );
    expect(calls).toEqual([]);
    expect((await inventoryOf(before).snapshot()).deployments).toEqual([]);
  });

  it('retry: only failed hosts are asked for again, and the deployment succeeds within max_retry', async () => {
    const calls: string[] = [];
    const released: string[] = [];
    const failures = new Map([['b2', 2]]);
    const broker = new Broker({
      directory: join(dir, 'retry'),
      providers: [flaky('alpha', failures, calls, released), flaky('beta', failures, calls, released)],
    });
    const events: string[] = [];
    await using d = await broker.up(
      metadata([
        { name: 'a1', provider: 'alpha' },
        { name: 'b1', provider: 'beta' },
        { name: 'b2', provider: 'beta' },
      ]),
      {
        provisioning: { beta: { strategy: 'retry', max_retry: 2 } },
        onProgress: (e) => events.push(`${e.host}:${e.outcome}:${e.attempt}`),
      },
    );
    expect(d.hosts.map((h) => h.name)).toEqual(['a1', 'b1', 'b2']);
    expect(calls.filter((c) => c === 'b2')).toHaveLength(3);
    expect(calls.filter((c) => c === 'b1')).toHaveLength(1);
    expect(events).toContain('b2.example.test:retrying:1');
    expect(events).toContain('b2.example.test:ok:3');
    expect(released).toEqual(['b2', 'b2']); // only the failed attempts were cleaned up
    expect((await inventoryOf(broker).list()).every((h) => h.deployment === d.id)).toBe(true);
  });

  it('retry: still failing after max_retry releases everything', async () => {
    const calls: string[] = [];
    const released: string[] = [];
    const failures = new Map([['b1', Infinity]]);
    const broker = new Broker({
      directory: join(dir, 'retry-fail'),
      providers: [flaky('alpha', failures, calls, released), flaky('beta', failures, calls, released)],
    });
    const error = await broker
      .up(
        metadata([
          { name: 'a1', provider: 'alpha' },
          { name: 'b1', provider: 'beta' },
        ]),
        { provisioning: { strategy: 'retry', max_retry: 1 } },
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PartialFailureError);
    expect((error as Error).message).toMatch(/b1\.example\.test \[beta\] \(after 2 attempts\)/);
    expect(calls.filter((c) => c === 'b1')).toHaveLength(2);
    expect(released.sort()).toEqual(['a1', 'b1', 'b1']);
    expect((await inventoryOf(broker).snapshot()).hosts).toEqual([]);
  });

  it('picks each host’s provider: host > metadata > provisioning default > option', async () => {
    const calls: string[] = [];
    const released: string[] = [];
    const none = new Map<string, number>();
    const providers = ['p1', 'p2', 'p3', 'p4'].map((n) => flaky(n, none, calls, released));
    const broker = new Broker({ directory: join(dir, 'precedence'), providers });
    const hosts = [{ name: 'own', provider: 'p1' }, { name: 'inherit' }];
    const cases: Array<[string | undefined, string | undefined, string | undefined, string[]]> = [
      ['p2', 'p3', 'p4', ['p1', 'p2']],
      [undefined, 'p3', 'p4', ['p1', 'p3']],
      [undefined, undefined, 'p4', ['p1', 'p4']],
    ];
    for (const [meta, def, option, expected] of cases) {
      await using d = await broker.up(metadata(hosts, meta), { provisioning: def ? { default_provider: def } : {}, ...(option ? { provider: option } : {}) });
      expect(d.hosts.map((h) => h.provider)).toEqual(expected);
    }
    await expect(broker.up(metadata(hosts.slice(1)))).rejects.toThrow(/inherit\.example\.test has no provider/);
  });

  it('rejects bad metadata before asking any provider, naming the host and key', async () => {
    const calls: string[] = [];
    const broker = new Broker({ directory: join(dir, 'bad'), providers: [flaky('alpha', new Map(), calls, [])] });
    await expect(broker.up({ provider: 'alpha', domains: [{ name: 'd.test', hosts: [{ name: 'web1', colour: 'red' } as never] }] })).rejects.toThrow(
      /domains\[0\] \(d\.test\)\.hosts\[0\] \(web1\)\.colour: unknown host key `colour`/,
    );
    await expect(broker.up('provider: alpha\ndomains: []\n')).rejects.toBeInstanceOf(UserInputError);
    await expect(broker.up(metadata([{ name: 'x', provider: 'nosuch' }]))).rejects.toThrow(/unknown provider `nosuch`/);
    await expect(broker.up(metadata([{ name: 'x' }, { name: 'x' }], 'alpha'))).rejects.toThrow(/x\.example\.test appear more than once/);
    await expect(broker.up(metadata([{ name: 'x' }], 'alpha'), { provisioning: { alhpa: {} } as never })).rejects.toThrow(/`alhpa` is neither a provider/);
    expect(calls).toEqual([]);
    expect((await inventoryOf(broker).snapshot()).deployments).toEqual([]);
  });
});
