/**
 * Scenarios: whole host workflows as YAML files (Broker's scenarios, version 2): find, validate
 * and run them on a Broker. See docs/scenarios.md.
 * @module
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, isAbsolute, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { parse } from 'yaml';
import { asError } from '../errors.js';
import { ScenarioError, type ScenarioProblem } from './errors.js';
import { scrub } from '../secrets.js';
import { ScenarioExit } from './actions/other.js';
import { ScenarioRun, type ScenarioEvent, type StepMemory } from './runner.js';
import { checkScenario, type ScenarioFile } from './schema.js';
import type { ScenarioBroker } from './seam.js';
import type { ScenarioState } from './state.js';

export type { ScenarioEvent, StepMemory, StepStatus } from './runner.js';
export type { ScenarioFile, Step, ActionName } from './schema.js';
export type { ScenarioBroker } from './seam.js';

/** Options of `broker.scenario()`. */
export interface ScenarioOptions {
  /** Values over the file's `variables` (the CLI's `--NAME value`). */
  vars?: Record<string, unknown>;
  /** Stops the run: the current step is aborted, then the scenario's hosts are checked in. */
  signal?: AbortSignal;
  /** Called as steps finish (the CLI prints progress from it). */
  onEvent?: (event: ScenarioEvent) => void;
  /** Where `output` steps write stdout and stderr (default: the process's). */
  stdout?: Writable;
  stderr?: Writable;
}

/** How a run ended. */
export interface ScenarioResult {
  name: string;
  file: string;
  /** `exited`: an `exit` step ended it (with its code). */
  status: 'completed' | 'failed' | 'exited';
  exitCode: number;
  message?: string;
  steps: StepMemory[];
  /** Names of the scenario's hosts left checked out on purpose (`keep: true`). */
  kept: string[];
}

/** Where a scenario name is looked up: `<directory>/scenarios/NAME.yaml` (or `.yml`). */
export function scenarioDirectory(brokerDirectory: string): string {
  return join(brokerDirectory, 'scenarios');
}

/** A file path, or a scenario's name in the broker directory. */
export async function findScenario(fileOrName: string, brokerDirectory: string): Promise<string> {
  const candidates = /[/\\]/.test(fileOrName) || /\.ya?ml$/.test(fileOrName) ? [resolve(fileOrName)] : [];
  for (const ext of ['.yaml', '.yml']) candidates.push(join(scenarioDirectory(brokerDirectory), `${fileOrName}${ext}`));
  for (const path of candidates) {
    if ((await stat(path).catch(() => undefined))?.isFile()) return path;
  }
  throw new ScenarioError(
    `no scenario ${JSON.stringify(fileOrName)}: not a file, nor in ${scenarioDirectory(brokerDirectory)}; see \`hostbroker scenario list\`.`,
    { file: fileOrName },
  );
}

/** Reads and checks a file: every problem at once, each naming its step and key. */
export async function validateScenario(path: string): Promise<{ scenario?: ScenarioFile; problems: ScenarioProblem[] }> {
  let raw: unknown;
  try {
    raw = parse(await readFile(path, 'utf8'), { prettyErrors: true });
  } catch (error) {
    return { problems: [{ key: 'file', message: `not readable YAML: ${asError(error).message}` }] };
  }
  return checkScenario(raw);
}

/** The scenarios in `<directory>/scenarios/`, with their descriptions and whether they are valid. */
export async function listScenarios(brokerDirectory: string): Promise<{ name: string; file: string; description?: string; steps: number; valid: boolean }[]> {
  const dir = scenarioDirectory(brokerDirectory);
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => /\.ya?ml$/.test(f)).sort();
  return Promise.all(
    files.map(async (f) => {
      const file = join(dir, f);
      const { scenario, problems } = await validateScenario(file);
      return {
        name: basename(f, extname(f)),
        file,
        ...(scenario?.description ? { description: scenario.description } : {}),
        steps: scenario?.steps.length ?? 0,
        valid: problems.length === 0,
      };
    }),
  );
}

/** Where the step log goes: a name in `<directory>/logs/`, a path as is, a directory gets `<scenario>.log`. */
function logPath(logFile: string, brokerDirectory: string, name: string): string {
  if (!isAbsolute(logFile) && !/[/\\]/.test(logFile)) return join(brokerDirectory, 'logs', logFile);
  return logFile.endsWith('/') ? join(logFile, `${name}.log`) : resolve(logFile);
}

/** The Broker a scenario runs on: the given one, or one made for its `config`. */
function brokerFor(broker: ScenarioBroker, scenario: ScenarioFile): { broker: ScenarioBroker; close?: () => Promise<void> } {
  const { settings, inventory, directory } = scenario.config;
  if (!settings && !inventory && !directory) return { broker };
  const derived = broker.derive({ ...(directory ? { directory } : {}), settings: { ...(settings ?? {}), ...(inventory ? { inventory } : {}) } });
  return { broker: derived, close: () => derived.close() };
}

/** Checks in the scenario's hosts and destroys its deployments, except those kept. */
async function cleanUp(state: ScenarioState, onEvent: (e: ScenarioEvent) => void): Promise<string[]> {
  const kept = [...state.hosts.values()].filter((h) => state.keep.has(h.id));
  const release = [...state.hosts.values()].filter((h) => !state.keep.has(h.id));
  const deployments = [...state.deployments.values()].filter((d) => !d.keep);
  const results = await Promise.allSettled([
    release.length ? state.broker.checkin(release) : Promise.resolve(),
    ...deployments.map((d) => d.deployment.destroy()),
  ]);
  onEvent({ type: 'cleanup', checkedIn: release.length, kept: kept.length, destroyed: deployments.length });
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return kept.map((h) => h.name);
}

/** Validates a scenario, then runs it on `broker`. Resolves when it completed or exited; rejects with a ScenarioError when invalid or a step failed. */
export async function runScenario(broker: ScenarioBroker, fileOrName: string, options: ScenarioOptions = {}): Promise<ScenarioResult> {
  const file = await findScenario(fileOrName, broker.directory);
  const { scenario, problems } = await validateScenario(file);
  if (!scenario) {
    const list = problems.map((p) => `  - ${p.step ? `step "${p.step}", ` : ''}${p.key}: ${p.message}`).join('\n');
    throw new ScenarioError(`${file} is not a valid scenario (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n${list}`, { file, problems });
  }
  const name = scenario.name ?? basename(file, extname(file));
  const target = brokerFor(broker, scenario);
  const log = scenario.config.log_file ? logPath(scenario.config.log_file, target.broker.directory, name) : undefined;
  if (log) mkdirSync(dirname(log), { recursive: true });
  const onEvent = (event: ScenarioEvent): void => {
    if (log) appendFileSync(log, `${scrub(`${new Date().toISOString()} ${name} ${JSON.stringify(event)}`)}\n`);
    options.onEvent?.(event);
  };
  const state: ScenarioState = {
    broker: target.broker,
    file,
    hosts: new Map(),
    keep: new Set(),
    deployments: new Map(),
    stdout: options.stdout ?? process.stdout,
    stderr: options.stderr ?? process.stderr,
    signal: options.signal,
    runNested: async (path, vars) => {
      const nested = await runScenario(target.broker, path, { ...options, vars }).catch((error: unknown) => {
        if (error instanceof ScenarioError && error.result) return error.result as unknown as ScenarioResult;
        throw error;
      });
      return { exitCode: nested.exitCode, status: nested.status };
    },
  };
  const run = new ScenarioRun(scenario, state, { ...scenario.variables, ...(options.vars ?? {}) }, onEvent);
  const result: ScenarioResult = { name, file, status: 'completed', exitCode: 0, steps: run.steps, kept: [] };
  let failure: unknown;
  try {
    await run.runSteps(scenario.steps);
  } catch (error) {
    if (error instanceof ScenarioExit) Object.assign(result, { status: 'exited', exitCode: error.exitCode, message: error.message });
    else failure = error;
  }
  try {
    result.kept = await cleanUp(state, onEvent);
  } catch (error) {
    failure ??= new ScenarioError(
      `${name}: checking in the scenario's hosts failed: ${asError(error).message}; see \`hostbroker inventory\`.`,
      { file },
      { cause: error },
    );
  } finally {
    await target.close?.();
  }
  if (failure === undefined) return result;
  const error = failure instanceof ScenarioError ? failure : new ScenarioError(`${name}: ${asError(failure).message}`, { file }, { cause: failure });
  Object.assign(result, { status: 'failed', exitCode: 1, message: error.message });
  error.result = result as unknown as Record<string, unknown>;
  throw error;
}
