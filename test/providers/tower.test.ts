/**
 * The `tower` provider against a fake Tower/AWX server (test/helpers/fake-tower.ts) that follows
 * the documented REST API v2. No real Tower can run here.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type BrokerError, ProviderError, SettingsError, TimeoutError, UserInputError } from '../../lib/errors.js';
import type { CheckoutTarget } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { type TestContext, intentRecord, readyRecord, testContext, testHostContext } from '../../lib/testing/index.js';
import { type TowerInstance, TowerRunArgs, tower } from '../../providers/tower/definition.js';
import impl from '../../providers/tower/provider.js';
import { FakeTower, type Step } from '../helpers/fake-tower.js';
import { rejection } from '../helpers/rejection.js';

let fake: FakeTower;
let dir: string;

const deployScript = ({ n, extraVars }: { n: number; extraVars: Record<string, unknown> }): Step[] => [
  { name: 'create-vm', status: 'successful', artifacts: { vm_name: `vm-${n}` } },
  {
    name: 'configure-vm',
    status: 'successful',
    artifacts: {
      _broker_facts: {
        fqdn: `vm-${n}.example.test`,
        name: `vm-${n}`,
        os_distribution: 'RedHat',
        os_distribution_version: '9.4',
        tower_inventory: 'jdoe-inventory',
      },
      _broker_args: { workflow: 'deploy-vm', rhel_version: extraVars.rhel_version ?? '9' },
    },
  },
  { name: 'notify', status: 'successful' },
];

beforeEach(async () => {
  fake = await FakeTower.start();
  dir = await mkdtemp(join(tmpdir(), 'hb-tower-'));
  contexts.length = 0;
  const inv = fake.addInventory('jdoe-inventory');
  fake.addInventory('shared');
  fake.addTemplate({ name: 'deploy-vm', inventory: inv, extraVars: { rhel_version: '9', flavor: 'small' }, script: deployScript });
  fake.addTemplate({
    name: 'deploy-broken',
    script: ({ n }) => [
      { name: 'create-vm', status: 'successful', artifacts: { vm_name: `broken-${n}` } },
      { name: 'configure-vm', status: 'failed', events: [{ task: 'Install packages', msg: 'No package matching foo-server is available' }] },
    ],
  });
  fake.addTemplate({ name: 'remove-vm', script: () => [{ name: 'remove', status: 'successful' }] });
  fake.addTemplate({ name: 'extend-vm', script: () => [{ name: 'extend', status: 'successful' }] });
  fake.addTemplate({
    name: 'list-templates',
    script: () => [{ name: 'list', status: 'successful', artifacts: { data_out: { list_templates: ['rhel-9.4', 'rhel-8.10'] } } }],
  });
  fake.addTemplate({ name: 'secret-admin-workflow', canStart: false, script: () => [] });
  fake.addTemplate({
    name: 'deploy-container',
    kind: 'job_template',
    script: ({ n }) => [
      {
        name: 'deploy-container',
        status: 'successful',
        artifacts: { container_fqdn: `ct-${n}.example.test`, vm_provisioned: `ct-${n}`, host_type: 'container' },
      },
    ],
  });
});

afterEach(async () => {
  await fake.close();
  await rm(dir, { recursive: true, force: true });
});

type Context = TestContext<TowerInstance>;
const contexts: Context[] = [];

async function context(instance: Record<string, unknown> = {}): Promise<Context> {
  const t = await testContext(tower, {
    instanceSettings: { baseUrl: fake.url, token: fake.token, pollInterval: 5, retryDelay: 5, requestTimeout: '5s', ...instance },
    settings: { ssh: { username: 'cloud-user' } },
    directory: dir,
    brokerId: 'broker-1',
    owner: 'jdoe',
  });
  contexts.push(t);
  return t;
}

/** Every line any context logged, and every record it holds (to check no secret is in them). */
const logLines = () => contexts.flatMap((t) => t.logLines);
const records = () => JSON.stringify(contexts.flatMap((t) => [...t.records.values()]));

/** The intent record as the Broker writes it, and the target. */
function target(t: Context, args: Record<string, unknown>, index = 0, count = 1): CheckoutTarget {
  return { record: intentRecord(t, { name: `tower-${index}`, recipe: { provider: 'tower', args } }), index, count };
}

/** The record as stored now (with what checkout noted through checkpoint). */
const stored = (t: Context, record: HostRecord) => t.records.get(record.id)!;
const on = (t: Context, record: HostRecord) => testHostContext(t, record);

async function checkout(t: Context, raw: Record<string, unknown>, index = 0, count = 1) {
  const args = tower.args.parse(raw);
  const tg = target(t, raw, index, count);
  return { host: await impl.checkout(args, tg, on(t, tg.record)), record: tg.record };
}

describe('tower arguments', () => {
  it('needs exactly one of workflow or job_template, and passes unknown arguments through', () => {
    expect(tower.args.safeParse({}).success).toBe(false);
    expect(tower.args.safeParse({ workflow: 'a', job_template: 'b' }).success).toBe(false);
    expect(tower.args.parse({ workflow: 'deploy-vm', rhel_version: '8' })).toMatchObject({ rhel_version: '8' });
    expect(tower.args.safeParse({ workflow: 'x', dangling: 'maybe' }).success).toBe(false);
  });
});

describe('tower checkout', () => {
  it('launches the workflow with extra vars and builds the host from its artifacts', async () => {
    const ctx = await context({ inventory: 'jdoe-inventory' });
    const { host, record } = await checkout(ctx, { workflow: 'deploy-vm', rhel_version: '8', extraVars: { flavor: 'large' } });
    expect(host.hostname).toBe('vm-1.example.test');
    expect(host.name).toBe('vm-1');
    expect(host.providerId).toBe('vm-1');
    expect(host.connection).toMatchObject({ kind: 'ssh', host: 'vm-1.example.test', username: 'cloud-user', port: 22 });
    expect(host.data).toMatchObject({ os_distribution: 'RedHat', os_distribution_version: '9.4', towerInventory: 'jdoe-inventory', template: 'deploy-vm' });
    const launch = fake.launchesOf('deploy-vm')[0]!;
    expect(launch.extraVars).toMatchObject({ rhel_version: '8', flavor: 'large', hostbroker_id: record.id });
    expect((launch.extraVars.hostbroker_tags as Record<string, string>)['hostbroker.owner']).toBe('jdoe');
    expect(launch.extraVars).not.toHaveProperty('workflow');
    expect(launch.inventory).toBe(fake.inventories[0]!.id);
    // The launch is noted on the record at once (ctx.checkpoint), so a killed process leaves it findable.
    expect(stored(ctx, record).data).toMatchObject({ towerJob: { kind: 'workflow' } });
  });

  it('checks out from a job template whose artifacts are plain facts', async () => {
    const { host } = await checkout(await context(), { job_template: 'deploy-container' });
    expect(host).toMatchObject({ hostname: 'ct-1.example.test', name: 'ct-1', data: { hostType: 'container' } });
  });

  it('waits through slow jobs, connection drops and 5xx while polling', async () => {
    fake.templates.find((t) => t.name === 'deploy-vm')!.polls = 4;
    fake.faults.push({ method: 'GET', path: /^\/api\/v2\/workflow_jobs\/\d+\/$/, status: 502, body: '<html>Bad Gateway</html>', times: 2 });
    fake.faults.push({ method: 'GET', path: /^\/api\/v2\/workflow_jobs\/\d+\/$/, status: 0, drop: true, times: 1 });
    const { host } = await checkout(await context({ retries: 0 }), { workflow: 'deploy-vm' });
    expect(host.hostname).toBe('vm-1.example.test');
    expect(logLines().some((l) => l.includes('polling'))).toBe(true);
  });

  it('gives up after maxWait with a TimeoutError; release then cancels the job and removes what it made', async () => {
    fake.templates.find((t) => t.name === 'deploy-vm')!.polls = 10_000;
    const ctx = await context({ maxWait: 60, pollInterval: 20 });
    const args = { workflow: 'deploy-vm' };
    const t = target(ctx, args);
    const error = await rejection(impl.checkout(tower.args.parse(args), t, on(ctx, t.record)));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.message).toMatch(/maxWait/);
    expect(error.message).toMatch(/#\/jobs\/workflow\/\d+\/output/);

    // The record as stored (with the launch noted), released with the default settings.
    const defaults = await context();
    await impl.release(stored(ctx, t.record), on(defaults, t.record));
    const releases = fake.launchesOf('remove-vm');
    expect(releases.map((l) => l.extraVars.source_vm)).toEqual(['vm-1']);
    const job = [...fake.jobs.values()].find((j) => j.template.name === 'deploy-vm')!;
    expect(job.status).toBe('canceled');
  });

  it('finds the launch of a record killed before it noted the job by its hostbroker_id, without filtering on extra_vars', async () => {
    fake.templates.find((t) => t.name === 'deploy-vm')!.polls = 10_000;
    const ctx = await context({ maxWait: 60, pollInterval: 20 });
    const args = { workflow: 'deploy-vm' };
    const other = target(ctx, args, 1, 2);
    await rejection(impl.checkout(tower.args.parse(args), other, on(ctx, other.record)));
    const t = target(ctx, args);
    await rejection(impl.checkout(tower.args.parse(args), t, on(ctx, t.record)));
    // The record as the Broker wrote it before checkout: no towerJob on it.
    await impl.release(t.record, on(await context(), t.record));
    const lookups = fake.requests.filter((r) => r.method === 'GET' && r.url.startsWith('/api/v2/workflow_jobs/?'));
    expect(lookups.length).toBeGreaterThan(0);
    expect(lookups.every((r) => !r.url.includes('extra_vars'))).toBe(true);
    const jobs = [...fake.jobs.values()].filter((j) => j.template.name === 'deploy-vm');
    // Only the record's own launch was canceled; the other record's still runs.
    expect(jobs.find((j) => j.extraVars.hostbroker_id === t.record.id)!.status).toBe('canceled');
    expect(jobs.find((j) => j.extraVars.hostbroker_id === other.record.id)!.status).toBe('running');
  });

  it('warns when Tower ignored the extra vars because the template does not prompt for them', async () => {
    fake.templates.find((t) => t.name === 'deploy-vm')!.askVariables = false;
    const ctx = await context();
    await checkout(ctx, { workflow: 'deploy-vm', rhel_version: '8' });
    expect(fake.launchesOf('deploy-vm')[0]!.extraVars).toEqual({});
    expect(logLines().some((l) => l.includes('ignored extra_vars') && l.includes('Prompt on launch'))).toBe(true);
  });

  it("checks in the hosts a failed workflow did create, and says why it failed in Tower's words", async () => {
    const ctx = await context();
    const args = { workflow: 'deploy-broken' };
    const t = target(ctx, args);
    const error = await rejection(impl.checkout(tower.args.parse(args), t, on(ctx, t.record)));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.message).toContain('No package matching foo-server is available');
    expect(error.message).toContain('Install packages');
    expect(error.message).toMatch(/checked in: broken-1/);
    expect(fake.launchesOf('remove-vm').map((l) => l.extraVars.source_vm)).toEqual(['broken-1']);
    // Releasing the failed record afterwards (as stored) launches nothing more.
    await impl.release(stored(ctx, t.record), on(ctx, t.record));
    expect(fake.launchesOf('remove-vm')).toHaveLength(1);
  });

  it('names the hosts a failed workflow did create for the Broker to keep, with dangling: keep', async () => {
    const ctx = await context();
    const args = { workflow: 'deploy-broken', dangling: 'keep' };
    const t = target(ctx, args);
    const error = await rejection<ProviderError>(impl.checkout(tower.args.parse(args), t, on(ctx, t.record)));
    expect(error.message).toMatch(/kept in the inventory.*broken-1/);
    expect(error.dangling).toEqual([{ name: 'broken-1', hostname: 'broken-1', providerId: 'broken-1', data: {} }]);
    expect(fake.launchesOf('remove-vm')).toHaveLength(0);
    await impl.release(stored(ctx, t.record), on(ctx, t.record));
    expect(fake.launchesOf('remove-vm')).toHaveLength(0);
    // The kept host, recorded as the Broker does, is checked in like any other.
    const kept: HostRecord = {
      ...t.record,
      id: 'kept-1',
      name: 'broken-1',
      hostname: 'broken-1',
      state: 'ready',
      providerId: 'broken-1',
      data: { deployFailed: true },
    };
    await impl.release(kept, on(ctx, kept));
    expect(fake.launchesOf('remove-vm').map((l) => l.extraVars.source_vm)).toEqual(['broken-1']);
  });

  it('fails with the reason when a successful workflow names no host, and cleans up what it made', async () => {
    fake.addTemplate({ name: 'deploy-quiet', script: ({ n }) => [{ name: 'create', status: 'successful', artifacts: { vm_name: `quiet-${n}` } }] });
    const error = await rejection(checkout(await context(), { workflow: 'deploy-quiet' }));
    expect(error.message).toMatch(/name no host/);
    expect(fake.launchesOf('remove-vm').map((l) => l.extraVars.source_vm)).toEqual(['quiet-1']);
  });

  it('checks out N hosts concurrently, one workflow each', async () => {
    const ctx = await context();
    fake.templates.find((t) => t.name === 'deploy-vm')!.polls = 2;
    const results = await Promise.all([0, 1, 2].map((i) => checkout(ctx, { workflow: 'deploy-vm' }, i, 3)));
    expect(new Set(results.map((r) => r.host.hostname)).size).toBe(3);
    expect(fake.launchesOf('deploy-vm')).toHaveLength(3);
    expect(new Set(fake.launchesOf('deploy-vm').map((l) => l.extraVars.hostbroker_id)).size).toBe(3);
  });
});

describe('tower errors', () => {
  it("carries Tower's message for a bad token, and never the token", async () => {
    const error = await rejection(checkout(await context({ token: 'wrong-token-value-123' }), { workflow: 'deploy-vm' }));
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).status).toBe(401);
    expect(error.message).toContain('Invalid token.');
    expect(error.message).not.toContain('wrong-token-value-123');
  });

  it("carries Tower's message when the user may not launch (403)", async () => {
    const error = await rejection(checkout(await context(), { workflow: 'secret-admin-workflow' }));
    expect((error as ProviderError).status).toBe(403);
    expect(error.message).toContain('You do not have permission to perform this action.');
  });

  it('says which workflow is unknown and how to list them', async () => {
    const error = await rejection(checkout(await context(), { workflow: 'no-such-thing' }));
    expect(error).toBeInstanceOf(UserInputError);
    expect(error.message).toMatch(/no-such-thing.*workflows/);
  });

  it('does not launch twice when the launch answers 5xx', async () => {
    fake.faults.push({ method: 'POST', path: /launch/, status: 500, body: { detail: 'A server error has occurred.' } });
    const error = await rejection(checkout(await context(), { workflow: 'deploy-vm' }));
    expect((error as ProviderError).status).toBe(500);
    expect((error as ProviderError).retryable).toBe(true);
    expect(error.message).toContain('A server error has occurred.');
    expect(fake.requests.filter((r) => r.method === 'POST')).toHaveLength(1);
  });

  it('retries reads on 5xx', async () => {
    fake.faults.push({ method: 'GET', path: /workflow_job_templates\/$/, status: 503, times: 2 });
    const { host } = await checkout(await context(), { workflow: 'deploy-vm' });
    expect(host.hostname).toBe('vm-1.example.test');
  });

  it('turns a malformed answer into a ProviderError naming the field', async () => {
    fake.faults.push({ method: 'GET', path: /workflow_job_templates\/$/, status: 200, body: { count: 1, results: 'not a list' } });
    const error = await rejection(checkout(await context(), { workflow: 'deploy-vm' }));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.message).toMatch(/unexpected shape.*results/);
  });

  it('answers a 400 on launch with the field Tower complains about', async () => {
    const error = await rejection(checkout(await context(), { workflow: 'deploy-vm', inventory: 999 }));
    expect((error as ProviderError).status).toBe(400);
    expect(error.message).toContain('Invalid pk "999"');
  });

  it("carries Tower's 404 when a noted job is gone", async () => {
    const ctx = await context();
    const t = target(ctx, { workflow: 'deploy-vm' });
    const error = await rejection(impl.release({ ...t.record, data: { towerJob: { kind: 'workflow', id: 99999 } } }, on(ctx, t.record)));
    expect((error as ProviderError).status).toBe(404);
    expect(error.message).toContain('Not found.');
  });

  it('needs credentials, and says how to give them', async () => {
    const error = await rejection(checkout(await context({ token: undefined }), { workflow: 'deploy-vm' }));
    expect(error).toBeInstanceOf(SettingsError);
    expect(error.message).toMatch(/tower\.token/);
  });

  it('logs in with username and password instead of a token', async () => {
    const { host } = await checkout(await context({ token: undefined, username: fake.username, password: fake.password }), { workflow: 'deploy-vm' });
    expect(host.hostname).toBe('vm-1.example.test');
    expect(fake.requests.at(-1)!.authorization).toMatch(/^Basic /);
  });

  it('keeps tokens and passwords out of records, logs and errors', async () => {
    process.env.HB_TEST_TOWER_PASSWORD = fake.password;
    const ctx = await context({ token: undefined, username: fake.username, passwordEnv: 'HB_TEST_TOWER_PASSWORD' });
    await checkout(ctx, { workflow: 'deploy-vm' });
    const failed = await rejection(checkout(ctx, { workflow: 'deploy-broken' }));
    const tokenCtx = await context();
    await checkout(tokenCtx, { workflow: 'deploy-vm' });
    fake.faults.push({ method: 'GET', path: /workflow_job_templates/, status: 500, body: { detail: `echoed ${fake.token} and ${fake.password}` }, times: 10 });
    const echoed = await rejection(checkout(tokenCtx, { workflow: 'deploy-vm' }));
    delete process.env.HB_TEST_TOWER_PASSWORD;
    const basic = Buffer.from(`${fake.username}:${fake.password}`).toString('base64');
    for (const text of [records(), logLines().join('\n'), failed.message, echoed.message, JSON.stringify((echoed as BrokerError).toJSON())]) {
      expect(text).not.toContain(fake.password);
      expect(text).not.toContain(fake.token);
      expect(text).not.toContain(basic);
    }
    expect(echoed.message).toContain('echoed [redacted]');
  });
});

describe('tower checkin, extend, sync, help, run', () => {
  it('checks in by launching the release workflow with the host name', async () => {
    const ctx = await context({ inventory: 'jdoe-inventory' });
    const { host, record } = await checkout(ctx, { workflow: 'deploy-vm', rhel_version: '8' });
    const ready = readyRecord(ctx, record, host);
    await impl.release(ready, on(ctx, ready));
    const launch = fake.launchesOf('remove-vm')[0]!;
    expect(launch.extraVars).toMatchObject({ source_vm: 'vm-1', rhel_version: '8' });
    expect(launch.extraVars).not.toHaveProperty('workflow');
    expect(launch.inventory).toBe(fake.inventories[0]!.id);
  });

  it("fails a checkin when the release workflow fails, with Tower's reason", async () => {
    fake.templates.find((t) => t.name === 'remove-vm')!.script = () => [
      { name: 'remove', status: 'failed', events: [{ task: 'Delete VM', msg: 'hypervisor unreachable' }] },
    ];
    const ctx = await context();
    const record = { ...target(ctx, { workflow: 'deploy-vm' }).record, providerId: 'vm-9', state: 'ready' as const };
    const error = await rejection(impl.release(record, on(ctx, record)));
    expect(error.message).toMatch(/remove-vm for vm-9 ended failed: .*hypervisor unreachable/);
  });

  it('extends by launching the extend workflow', async () => {
    const ctx = await context();
    const record = { ...target(ctx, { workflow: 'deploy-vm' }).record, providerId: 'vm-3', state: 'ready' as const };
    const until = new Date(Date.now() + 3600_000).toISOString();
    await impl.extend!(record, until, on(ctx, record));
    const launch = fake.launchesOf('extend-vm')[0]!;
    expect(launch.extraVars).toMatchObject({ target_vm: 'vm-3', lease_expires: until });
    expect(Number(String(launch.extraVars.new_expire_time).slice(1))).toBeGreaterThan(3590);
  });

  it('syncs the hosts of the configured inventory, leaving out other owners', async () => {
    const inv = fake.inventories[0]!.id;
    fake.addHost({
      name: 'vm-a',
      inventory: inv,
      variables: { fqdn: 'vm-a.example.test', hostbroker_tags: { 'hostbroker.id': 'rec-a', 'hostbroker.owner': 'jdoe', 'hostbroker.broker': 'broker-1' } },
      facts: { ansible_distribution: 'RedHat', _broker_args: { workflow: 'deploy-vm', password: 'nope-secret' } },
    });
    fake.addHost({ name: 'vm-b', inventory: inv, variables: { ansible_host: '10.0.0.7' }, facts: { ansible_fqdn: 'vm-b.example.test' } });
    fake.addHost({ name: 'vm-other', inventory: inv, variables: { owner: 'someone-else' }, facts: {} });
    fake.addHost({ name: 'vm-shared', inventory: fake.inventories[1]!.id, variables: {}, facts: {} });
    const hosts = await impl.discover!((await context({ inventory: 'jdoe-inventory' })).ctx);
    expect(hosts.map((h) => h.name).sort()).toEqual(['vm-a', 'vm-b']);
    const a = hosts.find((h) => h.name === 'vm-a')!;
    expect(a).toMatchObject({
      id: 'rec-a',
      brokerId: 'broker-1',
      hostname: 'vm-a.example.test',
      data: { os_distribution: 'RedHat', towerInventory: 'jdoe-inventory' },
    });
    expect(a.recipe?.args).toEqual({ workflow: 'deploy-vm' });
    expect(hosts.find((h) => h.name === 'vm-b')!.hostname).toBe('vm-b.example.test');
    // Another user's hosts, by setting `username` with an admin's token.
    const other = await impl.discover!((await context({ inventory: 'jdoe-inventory', username: 'someone-else' })).ctx);
    expect(other.map((h) => h.name).sort()).toEqual(['vm-b', 'vm-other']);
  });

  it('without a configured inventory, syncs the inventories named after the user', async () => {
    fake.addHost({ name: 'vm-mine', inventory: fake.inventories[0]!.id, variables: {}, facts: {} });
    fake.addHost({ name: 'vm-shared', inventory: fake.inventories[1]!.id, variables: {}, facts: {} });
    const hosts = await impl.discover!((await context()).ctx);
    expect(hosts.map((h) => h.name)).toEqual(['vm-mine']);
  });

  it('lists the workflows and job templates the user may launch, across pages', async () => {
    fake.maxPageSize = 2;
    const help = await impl.describe!((await context({ pageSize: 2 })).ctx);
    expect(help.workflows).toEqual(['deploy-vm', 'deploy-broken', 'remove-vm', 'extend-vm', 'list-templates']);
    expect(help.jobTemplates).toEqual(['deploy-container']);
    expect(fake.requests.filter((r) => r.url.includes('workflow_job_templates/?') && r.url.includes('page=')).length).toBeGreaterThan(1);
  });

  it('describes one workflow: its variables and survey', async () => {
    fake.templates.find((t) => t.name === 'deploy-vm')!.survey = [
      { variable: 'rhel_version', question_name: 'RHEL version', type: 'multiplechoice', default: '9', required: true, choices: '8\n9' },
    ];
    const help = await impl.describe!((await context()).ctx, 'deploy-vm');
    expect(help).toMatchObject({
      name: 'deploy-vm',
      kind: 'workflow',
      inventory: 'jdoe-inventory',
      extraVars: { rhel_version: '9', flavor: 'small' },
      survey: [{ variable: 'rhel_version', question: 'RHEL version', required: true, default: '9' }],
    });
    expect(await impl.describe!((await context()).ctx, 'job_template:deploy-container')).toMatchObject({ kind: 'job_template', name: 'deploy-container' });
  });

  it('runs a workflow that makes no host and returns its artifacts', async () => {
    const { ctx } = await context();
    const out = (await impl.actions!.run(TowerRunArgs.parse({ workflow: 'list-templates' }), ctx)) as Record<string, unknown>;
    expect(out).toMatchObject({ status: 'successful', artifacts: { data_out: { list_templates: ['rhel-9.4', 'rhel-8.10'] } } });
    const error = await rejection(impl.actions!.run(TowerRunArgs.parse({ workflow: 'deploy-broken' }), ctx));
    expect(error.message).toContain('No package matching foo-server');
    expect(fake.launchesOf('remove-vm')).toHaveLength(0);
  });
});

describe('tower through the Broker', () => {
  it('a failed checkout with dangling: keep leaves only the kept host in the inventory; with checkin, nothing', async () => {
    const { Broker } = await import('../../lib/broker/index.js');
    const broker = new Broker({
      directory: dir,
      settings: { logLevel: 'silent', tower: { baseUrl: fake.url, token: fake.token, pollInterval: 5, retryDelay: 5 } },
    });
    try {
      const kept = await rejection(broker.checkout({ provider: 'tower', workflow: 'deploy-broken', dangling: 'keep', waitForSsh: false }));
      expect(kept.message).toContain('No package matching foo-server');
      const records = await broker.inventory();
      expect(records.map((r) => [r.name, Boolean(r.kept)])).toEqual([['broken-1', true]]);
      expect(records[0]).toMatchObject({ providerId: 'broken-1', state: 'ready', provider: 'tower' });
      expect(records[0]!.kept?.reason).toContain('No package matching');
      expect(fake.launchesOf('remove-vm')).toHaveLength(0);

      await rejection(broker.checkout({ provider: 'tower', workflow: 'deploy-broken', waitForSsh: false }));
      expect(fake.launchesOf('remove-vm').map((l) => l.extraVars.source_vm)).toEqual(['broken-2']);
      expect((await broker.inventory()).map((r) => r.name)).toEqual(['broken-1']);
    } finally {
      await broker.close();
    }
  });
});
