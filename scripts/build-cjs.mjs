// The CommonJS build (dist/cjs) for `require('hostbroker')`: jest below Node 24.9 cannot require
// ES modules, and most jest projects are CommonJS. Each file of the ESM build is transpiled on its
// own (TypeScript's transpileModule, no bundling: one copy of every class), `import()` becomes
// `require()` (jest's CommonJS runtime has no dynamic import without a flag), and the declarations
// are copied beside, where dist/cjs/package.json makes them CommonJS ones.
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const dist = join(root, 'dist');
const out = join(dist, 'cjs');
rmSync(out, { recursive: true, force: true });

function* files(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else yield path;
  }
}

let count = 0;
// The command (bin) stays ESM: its entry awaits at the top level, which CommonJS cannot.
// hostbroker/testing registers vitest tests, and vitest refuses require(): Node's require(esm) loads its ESM build.
const testing = join(dist, 'lib', 'testing');
const assets = join(dist, 'lib', 'dashboard', 'assets');
const skip = new Set([join(dist, 'lib', 'cli', 'main.js'), join(dist, 'lib', 'cli', 'main.d.ts')]);
for (const top of ['lib', 'hosts', 'providers']) {
  for (const path of files(join(dist, top))) {
    if (skip.has(path) || path.startsWith(testing)) continue;
    const target = join(out, relative(dist, path));
    mkdirSync(dirname(target), { recursive: true });
    // The dashboard's page files are served as they are (the browser's script is no module of ours).
    if (path.endsWith('.d.ts') || path.startsWith(assets)) {
      cpSync(path, target);
      continue;
    }
    if (!path.endsWith('.js')) continue;
    // import.meta does not exist in CommonJS; the module's own URL is its __filename.
    const source = readFileSync(path, 'utf8').replaceAll('import.meta.url', 'require("node:url").pathToFileURL(__filename).href');
    const { outputText } = ts.transpileModule(source, {
      fileName: path,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false, allowJs: true },
    });
    writeFileSync(target, outputText);
    count++;
  }
}
writeFileSync(join(out, 'package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);
console.log(`dist/cjs: ${count} CommonJS modules`);
