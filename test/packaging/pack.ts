/**
 * The package as users get it: built, packed with `npm pack`, and installed into a new project
 * with npm. Shared by the packaging tests; one build at a time (a lock folder), since vitest runs
 * test files in parallel.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const ROOT = resolve(import.meta.dirname, '../..');
const LOCK = join(ROOT, '.tmp', 'packaging-build.lock');

/** Builds dist unless `npm test` just did (HB_TEST_BUILT=1); one process at a time. */
export async function ensureBuilt(): Promise<void> {
  if (process.env.HB_TEST_BUILT === '1') return;
  await mkdir(join(ROOT, '.tmp'), { recursive: true });
  for (;;) {
    try {
      await mkdir(LOCK);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    await run('npm', ['run', 'build', '--silent'], { cwd: ROOT });
  } finally {
    await rm(LOCK, { recursive: true, force: true });
  }
}

/** `npm pack` of the build into a new folder; the tarball's path. */
export async function packTarball(): Promise<string> {
  await ensureBuilt();
  const dir = await mkdtemp(join(tmpdir(), 'hb-pack-'));
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT });
  const [info] = JSON.parse(stdout) as [{ filename: string }];
  return join(dir, info.filename);
}

/**
 * A new project with the tarball installed by npm (from the cache when it can; the registry
 * otherwise), install scripts off as a cautious user has them. `type` is the project's module kind.
 */
export async function installedProject(tarball: string, type: 'module' | 'commonjs', extra: string[] = []): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hb-project-'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'hb-user-project', version: '1.0.0', private: true, type }));
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball, ...extra], {
    cwd: dir,
    maxBuffer: 16 << 20,
  });
  return dir;
}

/** Package folders under node_modules (scoped ones as `@scope/name`), nested ones included. */
export async function installedPackages(dir: string): Promise<string[]> {
  const { stdout } = await run('npm', ['ls', '--all', '--parseable'], { cwd: dir, maxBuffer: 16 << 20 }).catch((e: { stdout: string }) => e);
  return [
    ...new Set(
      stdout
        .split('\n')
        .slice(1)
        .filter(Boolean)
        .map((p) => p.slice(p.lastIndexOf('node_modules/') + 13)),
    ),
  ].sort();
}
