/**
 * A fresh npm install of the packed tarball, as a new user makes it: the core brings no provider
 * SDK, ES modules and CommonJS both load every entry point, the command runs, and a provider whose
 * SDK is missing says what to install and leaves nothing in the inventory. Then CommonJS jest
 * projects (jest 30 with babel-jest, and with ts-jest type-checking against the shipped
 * declarations) use the jest fixture with no flags, on the real `local` provider.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, installedPackages, installedProject, packTarball } from './pack.js';

const run = promisify(execFile);
const fromRoot = createRequire(join(ROOT, 'package.json'));
let tarball: string;
let project: string;
const cleanup: string[] = [];

beforeAll(async () => {
  tarball = await packTarball();
  project = await installedProject(tarball, 'commonjs');
  cleanup.push(join(tarball, '..'), project);
}, 600_000);

afterAll(async () => {
  for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
});

/** Runs node in the project with a fresh broker directory. */
async function node(args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  const directory = await mkdtemp(join(tmpdir(), 'hb-pkg-dir-'));
  cleanup.push(directory);
  return run(process.execPath, args, { cwd: project, env: { ...process.env, BROKER_DIRECTORY: directory, CI: '', ...env } }).then(
    (r) => ({ ...r, code: 0 }),
    (e: { stdout: string; stderr: string; code: number }) => e,
  );
}

describe('a fresh install of the packed tarball', { timeout: 300_000 }, () => {
  it('brings the core only: no provider SDK, engine client, native addon or build tool', async () => {
    const names = await installedPackages(project);
    expect(names).toContain('hostbroker');
    expect(names).toContain('ssh2');
    for (const sdk of ['dockerode', 'tar-stream', '@unraid/libvirt', '@aws-sdk/client-ec2', 'tsx', 'esbuild', 'jest', 'vitest'])
      expect(names).not.toContain(sdk);
  });

  it('loads every entry point with import and with require (no flags)', async () => {
    // hostbroker/testing registers vitest tests: it needs vitest, as a user of it has.
    await symlink(dirname(fromRoot.resolve('vitest/package.json')), join(project, 'node_modules', 'vitest'));
    const esm = await node([
      '--input-type=module',
      '-e',
      "const m = [await import('hostbroker'), await import('hostbroker/jest'), await import('hostbroker/testing'), await import('hostbroker/vitest')]; console.log(m.map((x) => Object.keys(x).length > 0).join())",
    ]);
    expect(esm).toMatchObject({ code: 0, stdout: 'true,true,true,true\n' });
    const cjs = await node([
      '-e',
      "const h = require('hostbroker'); const j = require('hostbroker/jest'); const t = require('hostbroker/testing'); console.log([typeof h.Broker, typeof j.useHost, typeof t.testInventoryStore, new h.UserInputError('x').code].join())",
    ]);
    expect(cjs).toMatchObject({ code: 0, stdout: 'function,function,function,USER_INPUT\n', stderr: '' });
    await rm(join(project, 'node_modules', 'vitest'));
  });

  it('runs the command, which lists the provider packages that are not installed', async () => {
    const r = await node([join(project, 'node_modules/.bin/hostbroker'), 'providers', '--json']);
    expect(r.code).toBe(0);
    const byName = Object.fromEntries((JSON.parse(r.stdout) as { name: string; packages: unknown }[]).map((p) => [p.name, p.packages]));
    expect(byName.container).toEqual([
      { name: 'dockerode', installed: false },
      { name: 'tar-stream', installed: false },
    ]);
    expect(byName.local).toEqual([]);
  });

  it('a checkout from ec2 without the AWS SDK names the package and records nothing', async () => {
    const r = await node([
      '-e',
      `const { Broker } = require('hostbroker');
       (async () => {
         const broker = new Broker();
         const error = await broker.checkout({ provider: 'ec2', image: 'ami-12345678' }).catch((e) => e);
         console.log(JSON.stringify({ code: error.code, packageName: error.packageName, left: (await broker.inventory()).length }));
         await broker.close();
       })();`,
    ]);
    expect(JSON.parse(r.stdout)).toEqual({ code: 'MISSING_DEPENDENCY', packageName: '@aws-sdk/client-ec2', left: 0 });
  });
});

/** A jest project inside the installed one; jest and its transformers come from this repository. */
async function jestProject(name: string, config: Record<string, unknown>, file: string, source: string): Promise<{ code: number; out: string }> {
  const dir = join(project, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'jest.config.js'), `module.exports = ${JSON.stringify({ rootDir: dir, testTimeout: 120_000, ...config })};\n`);
  await writeFile(join(dir, file), source);
  const directory = await mkdtemp(join(tmpdir(), 'hb-pkg-dir-'));
  cleanup.push(directory);
  const jest = fromRoot.resolve('jest/bin/jest');
  return run(process.execPath, [jest, '--config', join(dir, 'jest.config.js'), '--ci'], {
    cwd: dir,
    env: { ...process.env, BROKER_DIRECTORY: directory, CI: '' },
  }).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );
}

const FIXTURE_TEST = (
  lang: 'js' | 'ts',
): string => `${lang === 'ts' ? "import { useHost } from 'hostbroker/jest';\nimport { Broker, type Host } from 'hostbroker';" : "const { useHost } = require('hostbroker/jest');\nconst { Broker } = require('hostbroker');"}

const web = useHost({ provider: 'local' });

test('the fixture checks a host out for the file', async () => {
  const host${lang === 'ts' ? ': Host' : ''} = web.host;
  expect((await host.execute('echo hi')).stdout).toBe('hi\\n');
  expect(typeof Broker).toBe('function');
});
`;

describe('CommonJS jest projects use the jest fixture with no flags', { timeout: 300_000 }, () => {
  it(`jest ${fromRoot('jest/package.json').version} with babel-jest (jest's default transformer)`, async () => {
    const r = await jestProject('babel', { transform: { '\\.js$': fromRoot.resolve('babel-jest') } }, 'host.test.js', FIXTURE_TEST('js'));
    expect(r.out).toMatch(/Tests:\s+1 passed, 1 total/);
    expect(r.code).toBe(0);
  });

  it(`jest with ts-jest ${fromRoot('ts-jest/package.json').version}, type-checking against the shipped declarations`, async () => {
    const tsconfig = {
      module: 'commonjs',
      target: 'es2022',
      lib: ['es2023', 'esnext.disposable'],
      strict: true,
      esModuleInterop: true,
      types: [],
      skipLibCheck: true,
    };
    const r = await jestProject(
      'tsjest',
      { transform: { '\\.ts$': [fromRoot.resolve('ts-jest'), { tsconfig }] }, testRegex: '\\.test\\.ts$', moduleFileExtensions: ['ts', 'js', 'json'] },
      'host.test.ts',
      `declare const test: (name: string, fn: () => Promise<void>) => void;\ndeclare const expect: (v: unknown) => { toBe(x: unknown): void };\n${FIXTURE_TEST('ts')}`,
    );
    expect(r.out).toMatch(/Tests:\s+1 passed, 1 total/);
    expect(r.code).toBe(0);
  });

  it('a type error in the user test still fails under ts-jest (the check above is real)', async () => {
    const tsconfig = { module: 'commonjs', target: 'es2022', strict: true, types: [], skipLibCheck: true };
    const r = await jestProject(
      'tsjest-bad',
      { transform: { '\\.ts$': [fromRoot.resolve('ts-jest'), { tsconfig }] }, testRegex: '\\.test\\.ts$', moduleFileExtensions: ['ts', 'js', 'json'] },
      'bad.test.ts',
      "import { useHost } from 'hostbroker/jest';\ndeclare const test: (name: string, fn: () => void) => void;\nuseHost({ provider: 'no-such-provider' });\ntest('never', () => {});\n",
    );
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/TS2\d{3}/);
  });
});
