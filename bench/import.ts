/**
 * `npm run bench:import`: what `import('hostbroker')` costs a fresh process, against `ssh2` alone
 * (the one package every SSH session needs). Target: at most 1.3x.
 *
 * Each sample is a new `node` process that imports one module and reports the CPU time
 * (`process.cpuUsage`, user + system) and wall time of that import alone, so Node's own start-up
 * is not counted. The two modules alternate, sample by sample, because other people's work shares
 * this machine; figures are medians. It measures the build (`npm run build` first), as users get it.
 * Environment: BENCH_SAMPLES (10), BENCH_MODULES (extra comma-separated modules to measure too,
 * e.g. `zod,yaml,hostbroker/jest`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
if (!existsSync(join(root, 'dist/lib/index.js'))) {
  console.error('bench:import measures the build: run `npm run build` first.');
  process.exit(1);
}
const samples = Number(process.env.BENCH_SAMPLES ?? 10);
const extra = (process.env.BENCH_MODULES ?? '').split(',').filter(Boolean);
const modules = ['hostbroker', 'ssh2', ...extra];

/** One import in a new process: [cpu ms, wall ms]. */
function sample(specifier: string): [number, number] {
  const script = `const c = process.cpuUsage(); const t = performance.now(); await import(${JSON.stringify(specifier)});
const w = performance.now() - t; const u = process.cpuUsage(c); console.log(JSON.stringify([(u.user + u.system) / 1000, w]));`;
  // From the package root, `hostbroker` resolves to this package's own exports (the built files).
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  return JSON.parse(out) as [number, number];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const runs = new Map<string, { cpu: number[]; wall: number[] }>(modules.map((m) => [m, { cpu: [], wall: [] }]));
for (let i = 0; i < samples; i++) {
  for (const m of modules) {
    const [cpu, wall] = sample(m);
    runs.get(m)!.cpu.push(cpu);
    runs.get(m)!.wall.push(wall);
  }
}

const result = Object.fromEntries([...runs].map(([m, r]) => [m, { cpu: median(r.cpu), wall: median(r.wall) }]));
const hb = result.hostbroker!;
const ssh2 = result.ssh2!;
console.log(`cold import, median of ${samples} fresh processes (node ${process.version}, load average ${loadavg()[0]!.toFixed(2)}):`);
for (const [m, r] of Object.entries(result)) console.log(`  ${m.padEnd(20)} cpu ${r.cpu.toFixed(1).padStart(7)} ms   wall ${r.wall.toFixed(1).padStart(7)} ms`);
const ratio = hb.cpu / ssh2.cpu;
console.log(`  ratio hostbroker / ssh2: cpu ${ratio.toFixed(2)}x, wall ${(hb.wall / ssh2.wall).toFixed(2)}x (target at most 1.3x)`);
