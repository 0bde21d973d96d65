import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { stringify } from 'yaml';
import { Broker } from '../../lib/broker/index.js';
import { ScenarioError } from '../../lib/scenarios/errors.js';
import { type ImplementationFor, defineProvider, implementProvider } from '../../lib/provider.js';
import type { ScenarioResult } from '../../lib/scenarios/index.js';
import { rejection } from '../helpers/rejection.js';

/** A provider with one action, for the `execute` step; it makes no hosts. */
const actionCalls: unknown[] = [];
const actions = { greet: { description: 'returns a greeting', schema: z.strictObject({ who: z.string() }) } };
const GreeterArgs = z.strictObject({});
const GreeterInstance = z.strictObject({});
const greeter = defineProvider({
  name: 'greeter',
  description: 'test: one provider action',
  args: GreeterArgs,
  instance: GreeterInstance,
  needsSettings: false,
  actions,
  load: async (): Promise<ImplementationFor<typeof GreeterArgs, typeof GreeterInstance, typeof actions>> => implementation,
});
const implementation = implementProvider(greeter, {
  async checkout() {
    throw new Error('greeter makes no hosts');
  },
  async release() {},
  actions: {
    async greet(args) {
      actionCalls.push(args);
      return { greeting: `hello ${args.who}` };
    },
  },
});

let dir: string;
let broker: Broker;
let out: string;
const stdout = new Writable({
  write(chunk, _enc, done) {
    out += String(chunk);
    done();
  },
});

/** Writes a scenario file (from an object) and runs it. */
async function run(scenario: Record<string, unknown>, vars: Record<string, unknown> = {}, name = 'scenario.yaml'): Promise<ScenarioResult> {
  const file = join(dir, name);
  await writeFile(file, stringify(scenario));
  return broker.scenario(file, { vars, stdout, stderr: stdout });
}

const localHosts = (count = 1) => ({ name: 'Make hosts', action: 'checkout', arguments: { provider: 'local', count } });
const step = (result: ScenarioResult, name: string) => result.steps.find((s) => s.name === name);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hb-scenario-'));
  broker = new Broker({ directory: join(dir, 'broker'), providers: [greeter], settings: { logLevel: 'silent' } });
  out = '';
  actionCalls.length = 0;
});
afterEach(async () => {
  // No scenario may leave a host behind unless it asked to keep it (each test checks in what it kept).
  expect(await broker.inventory()).toEqual([]);
  await broker.close();
  await rm(dir, { recursive: true, force: true });
});

describe('scenario actions on local hosts', () => {
  it('checkout, run with per-host templates, capture, upload, download, and checkin at the end', async () => {
    await writeFile(join(dir, 'payload.txt'), 'payload\n');
    const result = await run({
      variables: { GREETING: 'hi' },
      steps: [
        localHosts(2),
        {
          name: 'Greet',
          action: 'ssh',
          arguments: { command: 'echo {{ GREETING }} from {{ host.name }}' },
          with: { hosts: 'scenario_inventory' },
          capture: { as: 'greetings' },
        },
        { name: 'Send', action: 'upload', arguments: { source: 'payload.txt', destination: 'in/payload.txt' }, with: { hosts: '@scenario_inv[0]' } },
        {
          name: 'Fetch',
          action: 'download',
          arguments: { source: 'in/payload.txt', destination: 'back/{{ host.name }}.txt' },
          with: { hosts: '@scenario_inv[0]' },
        },
        { name: 'Show', action: 'output', arguments: { content: '{{ greetings | length }} greetings' } },
      ],
    });
    expect(result.status).toBe('completed');
    const made = step(result, 'Make hosts')!.output as { name: string }[];
    expect(made).toHaveLength(2);
    const greetings = step(result, 'Greet')!.output as Record<string, { stdout: string; status: number }>;
    expect(Object.keys(greetings).sort()).toEqual(made.map((h) => h.name).sort());
    for (const [name, r] of Object.entries(greetings)) expect(r).toMatchObject({ stdout: `hi from ${name}\n`, status: 0 });
    expect(await readFile(join(dir, 'back', `${made[0]!.name}.txt`), 'utf8')).toBe('payload\n');
    expect(out).toBe('2 greetings\n');
  });

  it('checkin of a slice releases those hosts at once; `keep: true` hosts survive the end', async () => {
    const result = await run({
      steps: [
        { ...localHosts(3) },
        { name: 'Kept', action: 'checkout', arguments: { provider: 'local', keep: true } },
        { name: 'Drop two', action: 'checkin', with: { hosts: '@scenario_inv[0:2]' } },
        { name: 'Count', action: 'inventory', arguments: {}, capture: { as: 'left', transform: 'step.output | length' } },
        { name: 'Say', action: 'output', arguments: { content: '{{ left }}' } },
      ],
    });
    expect(out).toBe('2\n');
    const kept = step(result, 'Kept')!.output as { name: string; id: string }[];
    expect(result.kept).toEqual([kept[0]!.name]);
    expect((await broker.inventory()).map((r) => r.id)).toEqual([kept[0]!.id]);
    await broker.checkin(kept[0]!.id);
  });

  it('execute runs a provider action; providers and inventory report; output writes JSON and YAML by extension', async () => {
    const result = await run({
      steps: [
        { name: 'Greet', action: 'execute', arguments: { provider: 'greeter', action: 'greet', who: 'world' }, capture: { as: 'g' } },
        { name: 'List', action: 'provider_info', arguments: { provider: 'greeter' } },
        { name: 'Inv', action: 'inventory', arguments: { filter: 'provider=local' } },
        { name: 'Json', action: 'output', arguments: { content: '{{ g }}', destination: 'out/g.json' } },
        { name: 'Yaml', action: 'output', arguments: { content: { said: '{{ g.greeting }}' }, destination: 'out/g.yaml' } },
        { name: 'Append', action: 'output', arguments: { content: 'more', destination: 'out/g.yaml', mode: 'append' } },
      ],
    });
    expect(actionCalls).toEqual([{ who: 'world' }]);
    expect(step(result, 'Greet')!.output).toEqual({ greeting: 'hello world' });
    expect(step(result, 'List')!.output).toMatchObject({ name: 'greeter', actions: { greet: { description: 'returns a greeting' } } });
    expect(step(result, 'Inv')!.output).toEqual([]);
    expect(JSON.parse(await readFile(join(dir, 'out/g.json'), 'utf8'))).toEqual({ greeting: 'hello world' });
    expect(await readFile(join(dir, 'out/g.yaml'), 'utf8')).toBe('said: hello world\nmore\n');
  });

  it('up and destroy a topology; apply a plan of prefabs on its hosts', async () => {
    await writeFile(
      join(dir, 'topology.yaml'),
      stringify({
        name: 'pair',
        provider: 'local',
        domains: [
          {
            name: 'test.test',
            hosts: [
              { name: 'a.test.test', role: 'web' },
              { name: 'b.test.test', role: 'db' },
            ],
          },
        ],
      }),
    );
    const result = await run({
      steps: [
        { name: 'Up', action: 'up', arguments: { metadata: 'topology.yaml' }, capture: { as: 'dep' } },
        {
          name: 'Configure',
          action: 'apply',
          arguments: { mode: 'install', steps: [{ whiteprint: 'FileFromString', config: { path: 'motd', content: 'role {{ host.name }}\n' } }] },
          with: { hosts: 'inventory' },
        },
        { name: 'Read', action: 'run', arguments: { command: 'cat motd' }, with: { hosts: 'inventory' } },
        { name: 'Down', action: 'destroy', arguments: { deployment: '{{ dep.id }}' } },
      ],
    });
    expect(result.status).toBe('completed');
    const reads = step(result, 'Read')!.output as Record<string, { stdout: string }>;
    expect(Object.entries(reads).map(([name, r]) => r.stdout === `role ${name}\n`)).toEqual([true, true]);
    expect(await broker.deployments()).toEqual([]);
  });
});

describe('scenario control flow', () => {
  it('when true and false; loops over a list, over hosts and over a captured mapping', async () => {
    const result = await run({
      variables: { WORDS: ['alpha', 'beta'], ON: true },
      steps: [
        localHosts(2),
        { name: 'Skipped', action: 'output', arguments: { content: 'never' }, when: 'not ON' },
        { name: 'Ran', action: 'output', arguments: { content: 'on' }, when: 'ON and previous_step.status == "skipped"' },
        { name: 'Words', action: 'output', arguments: { content: 'w={{ w }}' }, loop: { iterable: 'WORDS', iter_var: 'w' } },
        {
          name: 'Per host',
          action: 'run',
          arguments: { command: 'echo {{ h.name }}' },
          loop: { iterable: '@scenario_inv[:]', iter_var: 'h' },
          with: { hosts: '{{ h }}' },
          capture: { as: 'names' },
        },
        {
          name: 'Pairs',
          action: 'output',
          arguments: { content: '{{ k }}:{{ v.stdout | trim }}' },
          loop: { iterable: 'names.items()', iter_var: 'k, v' },
          when: 'v.status == 0',
        },
      ],
    });
    expect(step(result, 'Skipped')!.status).toBe('skipped');
    expect(step(result, 'Ran')!.status).toBe('completed');
    const names = Object.keys(step(result, 'Per host')!.output as object);
    expect(names).toHaveLength(2);
    expect(out).toBe(`on\nw=alpha\nw=beta\n${names.map((n) => `${n}:${n}\n`).join('')}`);
  });

  it('retries a step until it succeeds on the third try', async () => {
    const counter = join(dir, 'tries');
    const result = await run({
      steps: [
        localHosts(1),
        {
          name: 'Flaky',
          action: 'run',
          arguments: { command: `n=$(( $(cat ${counter} 2>/dev/null || echo 0) + 1 )); echo $n > ${counter}; [ $n -ge 3 ]`, check: true },
          with: { hosts: 'scenario_inventory' },
          retry: { count: 3, delay: '10ms' },
        },
      ],
    });
    expect(step(result, 'Flaky')).toMatchObject({ status: 'completed', attempts: 3 });
    expect((await readFile(counter, 'utf8')).trim()).toBe('3');
  });

  it('a step past its timeout fails with TIMEOUT and stops the scenario; its hosts are still checked in', async () => {
    const error = await rejection(
      run({
        steps: [
          localHosts(1),
          { name: 'Slow', action: 'run', arguments: { command: 'sleep 5' }, with: { hosts: 'scenario_inventory' }, timeout: '300ms' },
          { name: 'After', action: 'output', arguments: { content: 'x' } },
        ],
      }),
    );
    expect(error).toBeInstanceOf(ScenarioError);
    expect((error as ScenarioError).step).toBe('Slow');
    const result = (error as ScenarioError).result as unknown as ScenarioResult;
    expect(step(result, 'Slow')).toMatchObject({ status: 'failed', error: { code: 'TIMEOUT' } });
    expect(step(result, 'After')).toBeUndefined();
    expect(out).toBe('');
  });

  it('recovery steps run on failure and the scenario goes on; on_error: continue and exit_on_error: false go on too', async () => {
    const result = await run({
      steps: [
        localHosts(1),
        {
          name: 'Fails',
          action: 'run',
          arguments: { command: 'exit 3', check: true },
          with: { hosts: 'scenario_inventory' },
          on_error: [{ name: 'Recover', action: 'output', arguments: { content: 'recovering after {{ steps.Fails.error.code }}' } }],
        },
        { name: 'Ignored', action: 'run', arguments: { command: 'false', check: true }, with: { hosts: 'scenario_inventory' }, on_error: 'continue' },
        { name: 'Also ignored', action: 'output', arguments: { content: '{{ 1 / none_such }}' }, exit_on_error: false },
        { name: 'End', action: 'output', arguments: { content: 'end' } },
      ],
    });
    expect(result.status).toBe('completed');
    expect(result.steps.map((s) => [s.name, s.status])).toEqual([
      ['Make hosts', 'completed'],
      ['Fails', 'failed'],
      ['Recover', 'completed'],
      ['Ignored', 'failed'],
      ['Also ignored', 'failed'],
      ['End', 'completed'],
    ]);
    expect(step(result, 'Fails')!.error).toMatchObject({ code: 'COMMAND', status: 3 });
    // An undefined name is an error naming the step.
    expect(step(result, 'Also ignored')!.error).toMatchObject({ code: 'USER_INPUT', message: expect.stringContaining('step "Also ignored"') });
    expect(out).toBe('recovering after COMMAND\nend\n');
  });

  it('parallel steps overlap on the hosts, sequential ones do not', async () => {
    const log = join(dir, 'order.log');
    const cmd = `echo start {{ host.name }} >> ${log}; sleep 0.3; echo end {{ host.name }} >> ${log}`;
    const lines = async () =>
      (await readFile(log, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[0]);
    await run({ steps: [localHosts(3), { name: 'Seq', action: 'run', arguments: { command: cmd }, with: { hosts: 'scenario_inventory' }, parallel: false }] });
    expect(await lines()).toEqual(['start', 'end', 'start', 'end', 'start', 'end']);
    await rm(log);
    await run({ steps: [localHosts(3), { name: 'Par', action: 'run', arguments: { command: cmd }, with: { hosts: 'scenario_inventory' } }] });
    expect(await lines()).toEqual(['start', 'start', 'start', 'end', 'end', 'end']);
  });

  it('exit ends the run with its code and message, after checking the hosts in', async () => {
    const result = await run({
      steps: [
        localHosts(1),
        { name: 'Stop', action: 'exit', arguments: { return_code: 4, message: 'enough' } },
        { name: 'Never', action: 'output', arguments: { content: 'x' } },
      ],
    });
    expect(result).toMatchObject({ status: 'exited', exitCode: 4, message: 'enough' });
    expect(step(result, 'Never')).toBeUndefined();
  });

  it('variables given to the run win over the file; run_scenarios chains files with their own hosts', async () => {
    await mkdir(join(dir, 'parts'));
    await writeFile(
      join(dir, 'parts/child.yaml'),
      stringify({
        variables: { WHO: 'child' },
        steps: [localHosts(1), { name: 'Hi', action: 'output', arguments: { content: '{{ WHO }} has {{ scenario_inventory | length }}' } }],
      }),
    );
    const result = await run(
      {
        variables: { WHO: 'file' },
        steps: [
          { name: 'Who', action: 'output', arguments: { content: '{{ WHO }}' } },
          { name: 'Chain', action: 'run_scenarios', arguments: { paths: ['parts/child.yaml'], vars: { WHO: 'chained' } } },
        ],
      },
      { WHO: 'cli' },
    );
    expect(out).toBe('cli\nchained has 1\n');
    expect(step(result, 'Chain')!.output).toEqual([{ path: join(dir, 'parts/child.yaml'), status: 'completed', exitCode: 0, success: true }]);
  });
});

describe('scenario config', () => {
  it('runs on its own broker directory and settings, and logs each step to its log file', async () => {
    const other = join(dir, 'other');
    const result = await run({
      config: { directory: other, log_file: 'run.log', settings: { local: { root: join(dir, 'homes') } } },
      steps: [
        { ...localHosts(1), arguments: { provider: 'local', count: 1, keep: true } },
        { name: 'Where', action: 'run', arguments: { command: 'pwd' }, with: { hosts: 'scenario_inventory' } },
      ],
    });
    const where = step(result, 'Where')!.output as { stdout: string };
    expect(where.stdout.startsWith(join(dir, 'homes'))).toBe(true);
    // The host is in the scenario's directory, not in the Broker's.
    expect(await broker.inventory()).toEqual([]);
    await using otherBroker = new Broker({ directory: other, settings: { logLevel: 'silent' } });
    const kept = await otherBroker.inventory();
    expect(kept).toHaveLength(1);
    const log = await readFile(join(other, 'logs', 'run.log'), 'utf8');
    expect(
      log
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l.slice(l.indexOf('{'))).step?.name)
        .filter(Boolean),
    ).toEqual(['Make hosts', 'Where']);
    await otherBroker.checkin(kept);
  });
});

describe('scenario validation', () => {
  it('reports every problem of a bad file, each naming its step and key, before anything runs', async () => {
    const error = await rejection(
      run({
        variables: {},
        bogus: 1,
        steps: [
          { name: 'A', action: 'teleport' },
          { name: 'B', action: 'run', arguments: {}, retry: { count: 0 } },
          { name: 'A', action: 'output', arguments: { content: 'x' }, on_error: [{ name: 'R', action: 'checkin' }] },
          { action: 'output', arguments: { content: 'x' } },
        ],
      }),
    );
    expect(error).toBeInstanceOf(ScenarioError);
    const problems = (error as ScenarioError).problems.map((p) => `${p.step ?? '-'}|${p.key}`);
    expect(problems).toEqual(expect.arrayContaining(['-|bogus', 'A|action', 'B|retry.count', '#4|name']));
    expect(existsSync(join(dir, 'broker', 'inventory.yaml'))).toBe(false);
  });

  it('reports the semantic problems of a file zod accepts', async () => {
    const error = await rejection(
      run({
        steps: [
          { name: 'A', action: 'run', arguments: {} },
          { name: 'A', action: 'output', arguments: { content: 'x' }, on_error: [{ name: 'R', action: 'checkin' }] },
        ],
      }),
    );
    expect((error as ScenarioError).problems.map((p) => `${p.step}|${p.key}`)).toEqual(['A|arguments.command', 'A|with.hosts', 'A|name', 'A > R|with.hosts']);
  });
});
