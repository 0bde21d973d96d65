/**
 * Runs the `hostbroker` CLI as a child process: the built one under `npm test` (HB_TEST_BUILT=1,
 * no TypeScript compile per start), the sources through tsx otherwise.
 * @module
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Whether tests run the built package (`npm test`) rather than the sources. */
export const BUILT = process.env.HB_TEST_BUILT === '1';
/** The `node` options that run TypeScript sources, from any working directory (none when built). */
export const SOURCE_LOADER = BUILT ? [] : ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href];
/** The library's entry: what `import 'hostbroker'` loads, built or from source. */
export const LIBRARY = resolve(BUILT ? 'dist/lib/index.js' : 'lib/index.ts');
const MAIN = resolve(BUILT ? 'dist/lib/cli/main.js' : 'lib/cli/main.ts');
/** How to start the CLI with `node`: the built file, or the sources through tsx. */
export const NODE_ARGS = [...SOURCE_LOADER, MAIN];

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** What a CLI run is given besides its arguments. */
export interface CliInput {
  /** What its stdin reads (then end of file). */
  input?: string;
  env?: Record<string, string>;
}

/** Starts the CLI with `BROKER_DIRECTORY=directory`; `output` fills as it prints, `done` is its end. */
export function startCli(
  directory: string,
  args: readonly string[],
  options: CliInput = {},
): { child: ChildProcessWithoutNullStreams; output: Ran; done: Promise<Ran> } {
  const child = spawn(process.execPath, [...NODE_ARGS, ...args], {
    env: { ...process.env, BROKER_DIRECTORY: directory, CI: '', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const output: Ran = { status: null, stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (output.stdout += String(d)));
  child.stderr.on('data', (d: Buffer) => (output.stderr += String(d)));
  const done = new Promise<Ran>((resolve, fail) => {
    child.on('error', fail);
    child.on('close', (status) => resolve({ ...output, status }));
  });
  child.stdin.end(options.input ?? '');
  return { child, output, done };
}

/** Runs the CLI to its end. */
export function runCli(directory: string, args: readonly string[], options: CliInput = {}): Promise<Ran> {
  return startCli(directory, args, options).done;
}
