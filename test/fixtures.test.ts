/**
 * hostbroker/vitest fixtures, run the way a user runs them: a real vitest run (a child process)
 * over generated test files that check out `local` hosts, one of which fails on purpose.
 * Afterwards the inventory and the local provider's servers and folders tell what was checked in
 * and what was kept.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker } from '../lib/broker/index.js';
import { localFolders, localServers, ROOT } from './reliability/util.js';

const VITEST = join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');
const FIXTURES = join(ROOT, 'lib', 'runners', 'vitest.ts');

/** Runs vitest over `files` in a fresh project dir; returns its exit code and output. */
async function runVitest(brokerDir: string, files: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const project = await mkdtemp(join(tmpdir(), 'hb-fixture-project-'));
  await writeFile(
    join(project, 'vitest.config.mjs'),
    `export default { test: { include: ['*.test.ts'], pool: 'forks', testTimeout: 60000, hookTimeout: 60000 } };\n`,
  );
  for (const [name, text] of Object.entries(files)) await writeFile(join(project, name), text);
  const child = spawn(process.execPath, [VITEST, 'run', '--root', project, '--reporter', 'verbose'], {
    cwd: ROOT,
    env: { ...process.env, HB_DIR: brokerDir, CI: process.env.CI ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += String(d)));
  child.stderr.on('data', (d: Buffer) => (output += String(d)));
  const code = await new Promise<number | null>((r) => child.on('close', r));
  await rm(project, { recursive: true, force: true });
  return { code, output };
}

const header = `import { test as base, expect } from 'vitest';\nimport { hostbroker } from ${JSON.stringify(FIXTURES)};\n`;

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) {
    const broker = new Broker({ directory: d });
    await broker.checkin({ all: true }).catch(() => undefined);
    await broker.close();
    await rm(d, { recursive: true, force: true });
  }
});

async function brokerDir(settings = ''): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'hb-fixtures-'));
  dirs.push(d);
  if (settings) await writeFile(join(d, 'broker_settings.yaml'), settings);
  return d;
}

describe('hostbroker/vitest', () => {
  it('checks a test-scoped host in after a passing test and keeps the one of a failing test, with the failure on its record', async () => {
    const dir = await brokerDir();
    const { code, output } = await runVitest(dir, {
      'hosts.test.ts':
        header +
        `const hb = hostbroker({ broker: { directory: process.env.HB_DIR }, keepOnFailure: true });
const test = base.extend('host', hb.host({ provider: 'local', name: 'fx' }));
test('passes', async ({ host }) => {
  const r = await host.execute('echo ok');
  expect(r.stdout).toBe('ok\\n');
});
test('breaks on purpose', async ({ host }) => {
  await host.execute('touch evidence');
  expect(1 + 1, 'the sum the test wanted').toBe(3);
});
`,
    });
    expect(code, output).toBe(1);
    expect(output).toMatch(/passes/);
    const broker = new Broker({ directory: dir });
    const records = await broker.inventory();
    expect(records).toHaveLength(1);
    const [kept] = records;
    expect(kept!.kept?.reason).toMatch(/^test failed: hosts\.test\.ts > breaks on purpose: the sum the test wanted/);
    expect(Date.parse(kept!.kept!.at)).toBeGreaterThan(Date.now() - 120_000);
    // The kept host is alive: a person can log in and look at what the test left.
    const again = broker.reconstruct(records[0]!);
    expect((await again.execute('ls evidence')).status).toBe(0);
    await again.disconnect();
    expect(await localServers(dir)).toHaveLength(1);
    expect(await localFolders(dir)).toEqual([kept!.id]);
    await broker.checkin({ all: true });
    expect(await localServers(dir)).toEqual([]);
    expect(await localFolders(dir)).toEqual([]);
  });

  it('checks every host in when keep-on-failure is off (the default), even after a failure', async () => {
    const dir = await brokerDir();
    const { code, output } = await runVitest(dir, {
      'off.test.ts':
        header +
        `const hb = hostbroker({ broker: { directory: process.env.HB_DIR } });
const test = base.extend('host', hb.host({ provider: 'local' }));
test('fails', async ({ host }) => { expect(host.name).toBe('not its name'); });
`,
    });
    expect(code, output).toBe(1);
    expect(await new Broker({ directory: dir }).inventory()).toEqual([]);
    expect(await localServers(dir)).toEqual([]);
    expect(await localFolders(dir)).toEqual([]);
  });

  it('follows the checkout.keepOnFailure setting, and a fixture option overrides it', async () => {
    const dir = await brokerDir('checkout:\n  keepOnFailure: true\n');
    const { code, output } = await runVitest(dir, {
      'setting.test.ts':
        header +
        `const hb = hostbroker({ broker: { directory: process.env.HB_DIR } });
const test = base
  .extend('kept', hb.host({ provider: 'local', name: 'by-setting' }))
  .extend('notKept', hb.host({ provider: 'local', name: 'by-option' }, { keepOnFailure: false }));
test('fails with both', async ({ kept, notKept }) => { expect([kept.name, notKept.name]).toEqual([]); });
`,
    });
    expect(code, output).toBe(1);
    const records = await new Broker({ directory: dir }).inventory();
    expect(records.map((r) => r.name)).toEqual(['by-setting']);
    expect(records[0]!.kept?.reason).toMatch(/fails with both/);
  });

  it('shares a file-scoped group across tests and keeps it when one test of the file failed (hb.watch)', async () => {
    const dir = await brokerDir();
    const { code, output } = await runVitest(dir, {
      'group.test.ts':
        header +
        `const hb = hostbroker({ broker: { directory: process.env.HB_DIR }, keepOnFailure: true });
const test = base
  .extend('cluster', { scope: 'file' }, hb.group({ provider: 'local', count: 2 }))
  .extend('hostbrokerWatch', { auto: true }, hb.watch);
const seen = new Set<string>();
test('first', async ({ cluster }) => { cluster.forEach((h) => seen.add(h.id)); expect(cluster).toHaveLength(2); });
test('second sees the same hosts', async ({ cluster }) => { expect(cluster.every((h) => seen.has(h.id))).toBe(true); });
test('third fails', async ({ cluster }) => { expect((await cluster.execute('exit 3'))[0]!.status).toBe(0); });
`,
      'clean.test.ts':
        header +
        `const hb = hostbroker({ broker: { directory: process.env.HB_DIR }, keepOnFailure: true });
const test = base
  .extend('cluster', { scope: 'file' }, hb.group({ provider: 'local', count: 2, name: 'clean' }))
  .extend('hostbrokerWatch', { auto: true }, hb.watch);
test('all good', async ({ cluster }) => { expect((await cluster.execute('true')).map((r) => r.status)).toEqual([0, 0]); });
`,
    });
    expect(code, output).toBe(1);
    expect(output).toMatch(/second sees the same hosts/);
    const records = await new Broker({ directory: dir }).inventory();
    expect(records).toHaveLength(2);
    for (const r of records) {
      expect(r.name).not.toMatch(/^clean/);
      expect(r.kept?.reason).toMatch(/^test failed: group\.test\.ts > third fails/);
    }
    expect(await localServers(dir)).toHaveLength(2);
  });
});
