import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Broker } from '../../lib/broker/index.js';
import { runCli, startCli } from '../helpers/cli-process.js';

let dir: string;
const inventory = async () => {
  await using broker = new Broker({ directory: dir, settings: { logLevel: 'silent' } });
  return broker.inventory();
};

/** A scenario that checks out two local hosts, then waits a minute on them (for stopping it midway). */
async function slowScenario(extra: Record<string, unknown>[] = []): Promise<string> {
  const file = join(dir, 'slow.yaml');
  await writeFile(
    file,
    stringify({
      steps: [
        { name: 'Hosts', action: 'checkout', arguments: { provider: 'local', count: 2 } },
        { name: 'Wait', action: 'run', arguments: { command: 'sleep 60' }, with: { hosts: 'scenario_inventory' }, on_error: 'continue' },
        ...extra,
      ],
    }),
  );
  return file;
}

/** Starts a scenario run and resolves once its checkout step has finished. */
async function startedAfterCheckout(file: string) {
  const run = startCli(dir, ['scenario', 'run', file]);
  while (!run.output.stderr.includes('Hosts (checkout) ok')) await new Promise((r) => setTimeout(r, 20));
  return run;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hb-scenario-cli-'));
  await mkdir(join(dir, 'scenarios'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('hostbroker scenario', { timeout: 120_000 }, () => {
  it('runs a scenario by name with --NAME value overrides typed as YAML, printing progress and a table', async () => {
    await writeFile(
      join(dir, 'scenarios/hello.yaml'),
      stringify({
        description: 'says hello',
        variables: { COUNT: 1, WHO: 'file' },
        steps: [
          { name: 'Hosts', action: 'checkout', arguments: { provider: 'local', count: '{{ COUNT }}' } },
          { name: 'Hello', action: 'output', arguments: { content: '{{ WHO }} {{ scenario_inventory | length }} {{ COUNT * 10 }}' } },
        ],
      }),
    );
    const ran = await runCli(dir, ['scenario', 'run', 'hello', '--WHO', 'cli', '--COUNT=2']);
    expect(ran.status).toBe(0);
    expect(ran.stdout).toContain('cli 2 20\n');
    expect(ran.stdout).toMatch(/Hello\s+output\s+completed/);
    expect(ran.stderr).toContain('[2/2] Hello (output) ok');
    expect(ran.stderr).toContain('2 checked in');
    expect(await inventory()).toEqual([]);

    const listed = await runCli(dir, ['scenario', 'list', '--json']);
    expect(JSON.parse(listed.stdout)).toEqual([{ name: 'hello', file: join(dir, 'scenarios/hello.yaml'), description: 'says hello', steps: 2, valid: true }]);
  });

  it('--json prints every step with its status and output; an exit step sets the exit status', async () => {
    const file = join(dir, 'exit.yaml');
    await writeFile(
      file,
      stringify({
        steps: [
          { name: 'Say', action: 'output', arguments: { content: 'to stderr under --json' } },
          { name: 'Stop', action: 'exit', arguments: { return_code: 3, message: 'stopped on purpose' } },
        ],
      }),
    );
    const ran = await runCli(dir, ['scenario', 'run', file, '--json']);
    expect(ran.status).toBe(3);
    const result = JSON.parse(ran.stdout);
    expect(result).toMatchObject({ status: 'exited', exitCode: 3, message: 'stopped on purpose' });
    expect(result.steps.map((s: { name: string; status: string }) => [s.name, s.status])).toEqual([
      ['Say', 'completed'],
      ['Stop', 'completed'],
    ]);
    expect(ran.stderr).toContain('to stderr under --json');
  });

  it('validate lists every problem with its step and key, and exits 11', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      stringify({
        steps: [
          { name: 'A', action: 'nope' },
          { name: 'B', action: 'run', with: { hosts: 'scenario_inventory' }, loop: { iterable: 'X', iter_var: '1x' } },
        ],
      }),
    );
    const ran = await runCli(dir, ['scenario', 'validate', file]);
    expect(ran.status).toBe(11);
    expect(ran.stdout).toContain('3 problems');
    expect(ran.stdout).toContain('step "A", action:');
    expect(ran.stdout).toContain('step "B", loop.iter_var:');
    expect(ran.stdout).toContain('step "B", arguments.command:');
    const asJson = JSON.parse((await runCli(dir, ['scenario', 'validate', file, '--json'])).stdout);
    expect(asJson.problems.map((p: { step: string; key: string }) => `${p.step}:${p.key}`).sort()).toEqual([
      'A:action',
      'B:arguments.command',
      'B:loop.iter_var',
    ]);
  });

  it('Ctrl-C stops the running step, checks the scenario hosts in, and exits 130', async () => {
    const { child, done } = await startedAfterCheckout(await slowScenario([{ name: 'Never', action: 'output', arguments: { content: 'never' } }]));
    child.kill('SIGINT');
    const ran = await done;
    expect(ran.status).toBe(130);
    expect(ran.stdout).not.toContain('never');
    expect(ran.stderr).toContain('2 checked in');
    expect(await inventory()).toEqual([]);
  });

  it('a failed step exits 1 and says which step; a scenario SIGKILLed mid-run leaves records that checkin --all finishes', async () => {
    const failing = join(dir, 'fail.yaml');
    await writeFile(failing, stringify({ steps: [{ name: 'Boom', action: 'exit', arguments: { return_code: 'x' } }] }));
    const failed = await runCli(dir, ['scenario', 'run', failing]);
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain('step "Boom" failed');

    const { child, done } = await startedAfterCheckout(await slowScenario());
    child.kill('SIGKILL');
    await done;
    const left = await inventory();
    expect(left).toHaveLength(2);
    const folders = left.map((r) => String(r.data.folder));
    for (const folder of folders) expect(existsSync(folder)).toBe(true);
    const checkin = await runCli(dir, ['checkin', '--all']);
    expect(checkin.status).toBe(0);
    expect(await inventory()).toEqual([]);
    // The local hosts' folders went with them.
    for (const folder of folders) expect(existsSync(folder)).toBe(false);
  });
});
