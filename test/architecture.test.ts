// The shape the code promises (docs/providers.md, README "Architecture"): no import cycle among
// the library's modules, data flowing one way, small modules, providers that never see the store.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) return sources(path);
    return /\.ts$/.test(name) && !name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Relative imports of a module (static and type-only; dynamic too unless `lazy` is false), as repo paths. */
function importsOf(file: string, lazy = true): string[] {
  // Comments may quote imports (doc examples); they are not edges.
  const text = readFileSync(join(root, file), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  const pattern = lazy ? /(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g : /(?:from\s+|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g;
  for (const m of text.matchAll(pattern)) {
    out.push(relative(root, resolve(root, dirname(file), m[1]!.replace(/\.js$/, '.ts'))));
  }
  return out;
}

/** What `import(entry)` loads: modules reached by static value imports (not `import type`, not `import()`), with packages as `npm:name`. */
function loadedBy(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    if (file.startsWith('npm:')) return;
    const text = readFileSync(join(root, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
    for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) visit(relative(root, resolve(root, dirname(file), spec.replace(/\.js$/, '.ts'))));
      else if (!spec.startsWith('node:')) seen.add(`npm:${spec}`);
    }
  };
  visit(entry);
  return seen;
}

/** Every cycle found by a depth-first walk, as module paths. */
function cycles(files: readonly string[], edges: (file: string) => string[] = importsOf): string[][] {
  const graph = new Map(files.map((f) => [f, edges(f).filter((i) => files.includes(i))]));
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const next of graph.get(f) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (!state.has(f)) visit(f);
  return found;
}

describe('architecture', () => {
  const lib = sources('lib');
  const everything = [...lib, ...sources('hosts'), ...sources('providers')];

  it('has no import cycle in lib/ and hosts/ (dynamic and type imports count)', () => {
    expect(cycles([...lib, ...sources('hosts')])).toEqual([]);
  });

  it('has no static import cycle with providers/ (a definition lazily loading its implementation is the one way back)', () => {
    expect(cycles(everything, (f) => importsOf(f, false))).toEqual([]);
  });

  it('finds a cycle when there is one (the check itself works)', () => {
    const edges: Record<string, string[]> = { a: ['b'], b: ['c'], c: ['a'], d: ['a'] };
    expect(cycles(Object.keys(edges), (f) => edges[f]!)).toEqual([['a', 'b', 'c', 'a']]);
    expect(importsOf('lib/broker/core.ts')).toContain('lib/broker/runtime.ts');
  });

  it('keeps the Broker out of topologies and hosts: data flows Broker → provider → Host → Session', () => {
    const offenders = [...sources('lib/topology'), ...sources('hosts'), ...sources('providers')].filter((f) =>
      importsOf(f).some((i) => i.startsWith('lib/broker/')),
    );
    expect(offenders).toEqual([]);
  });

  it('gives providers no way to the inventory store', () => {
    const offenders = sources('providers').filter((f) => importsOf(f).some((i) => i.startsWith('lib/inventory')));
    expect(offenders).toEqual([]);
  });

  it('keeps import("hostbroker") cheap: no zod, SDK, provider implementation, CLI or checkout code loads until used (bench:import)', () => {
    const loaded = [...loadedBy('lib/index.ts')];
    expect(loaded).toContain('lib/broker/index.ts'); // the walk itself works
    expect([...loadedBy('lib/broker/checkout.ts')]).toContain('npm:ssh-config');
    const heavy =
      /^npm:|^providers\/[^/]+\/(?!definition\.ts$)|^lib\/(cli\/(?!format\.ts$)|dashboard\/|scenarios\/(?!errors\.ts$)|runners\/|testing\/)|^lib\/broker\/(checkout|release|reuse|reconcile)\.ts$|^lib\/inventory\/etcd(-client)?\.ts$|^lib\/topology\/up\.ts$|^hosts\/ssh-(auth|jump|link)\.ts$/;
    expect(loaded.filter((f) => heavy.test(f))).toEqual([]);
  });

  it('keeps every module in lib/ around 300 lines or less', () => {
    const long = lib.map((f) => ({ f, lines: readFileSync(join(root, f), 'utf8').split('\n').length })).filter((x) => x.lines > 330);
    expect(long).toEqual([]);
  });
});
