/**
 * What `npm pack` ships is exactly the runtime: the ESM and CommonJS builds with their
 * declarations, LICENSE, README and package.json; no sources, source maps, API docs or tests.
 * The list is committed (files.txt) so a change to it is a reviewed change. After adding or
 * removing a module, regenerate it with `npm run build && npm run pack:list`.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, ensureBuilt } from './pack.js';

const run = promisify(execFile);
let files: string[];

beforeAll(async () => {
  await ensureBuilt();
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, maxBuffer: 16 << 20 });
  files = (JSON.parse(stdout) as [{ files: { path: string }[] }])[0].files.map((f) => f.path).sort();
}, 180_000);

describe('npm pack', () => {
  it('ships exactly the committed list of files', async () => {
    const committed = (await readFile(join(import.meta.dirname, 'files.txt'), 'utf8')).split('\n').filter(Boolean);
    expect(files, 'the packed files changed: if on purpose, run `npm run build && npm run pack:list` and commit files.txt').toEqual(committed);
  });

  it('ships no source map, source, test or API docs build, and ships the licence', () => {
    expect(files.filter((f) => f.endsWith('.map') || (f.endsWith('.ts') && !f.endsWith('.d.ts')))).toEqual([]);
    expect(files.filter((f) => /^(docs|test|bench|examples|scripts|lib|hosts|providers)\//.test(f))).toEqual([]);
    expect(files).toContain('LICENSE');
  });

  it('ships every file package.json points at (exports, main, types, bin)', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
    const targets = new Set<string>();
    const walk = (v: unknown): void => {
      if (typeof v === 'string') targets.add(v.replace(/^\.\//, ''));
      else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
    };
    walk([pkg.exports, pkg.main, pkg.types, pkg.bin, pkg.typesVersions]);
    expect([...targets].filter((t) => !files.includes(t))).toEqual([]);
  });
});
