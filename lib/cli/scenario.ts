/**
 * `hostbroker scenario run|list|validate`: YAML workflows (see docs/scenarios.md).
 * @module
 */
import type { Command } from 'commander';
import { UserInputError } from '../errors.js';
import { ScenarioError } from '../scenarios/errors.js';
import type { ScenarioEvent, ScenarioResult } from '../scenarios/index.js';
import { parseYamlStrict } from '../yaml.js';
import type { CliContext, CommandResult } from './context.js';
import { table } from './format.js';

/** `--NAME value` / `--NAME=value` pairs after the scenario: values are read as YAML scalars (`3`, `true`). */
export function scenarioVars(args: readonly string[]): Record<string, unknown> {
  const vars: Record<string, unknown> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const m = /^--([A-Za-z_][A-Za-z0-9_.]*)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new UserInputError(`unexpected ${JSON.stringify(arg)}: variables are given as --NAME value (or --NAME=value) after the scenario.`);
    let value = m[2];
    if (value === undefined) {
      value = args[i + 1];
      if (value === undefined || value.startsWith('--')) throw new UserInputError(`--${m[1]} needs a value: --${m[1]} VALUE.`);
      i++;
    }
    vars[m[1]!] = /^[\s]*[[{]/.test(value) || /^(-?\d+(\.\d+)?|true|false|null)$/.test(value) ? parseYamlStrict(value) : value;
  }
  return vars;
}

/** One line per finished step on stderr. */
function progress(stderr: NodeJS.WriteStream): (event: ScenarioEvent) => void {
  const mark: Record<string, string> = { completed: 'ok', skipped: 'skipped', failed: 'FAILED' };
  return (event) => {
    if (event.type === 'step') {
      const s = event.step;
      const tries = s.attempts > 1 ? `, ${s.attempts} tries` : '';
      const why = s.status === 'failed' ? `: ${String(s.error?.message ?? '')}` : '';
      stderr.write(`[${event.index + 1}/${event.total}] ${s.name} (${s.action}) ${mark[s.status] ?? s.status} in ${s.durationMs} ms${tries}${why}\n`);
    } else if (event.type === 'retry') {
      stderr.write(`      ${event.step}: try ${event.attempt} failed (${event.error}); trying again\n`);
    } else if (event.checkedIn || event.kept || event.destroyed) {
      stderr.write(`scenario hosts: ${event.checkedIn} checked in, ${event.kept} kept, ${event.destroyed} deployment(s) destroyed\n`);
    }
  };
}

function summary(result: ScenarioResult): string {
  const rows = result.steps.map((s) => [s.name, s.action, s.status, s.attempts, `${s.durationMs} ms`]);
  const end = result.status === 'completed' ? 'completed' : `${result.status} (exit ${result.exitCode})${result.message ? `: ${result.message}` : ''}`;
  return `${table(['STEP', 'ACTION', 'STATUS', 'TRIES', 'TIME'], rows)}${result.name}: ${end}\n${result.kept.length ? `kept: ${result.kept.join(', ')}\n` : ''}`;
}

export function registerScenarioCommands(program: Command, ctx: CliContext, act: (fn: () => Promise<CommandResult>) => Promise<void>): void {
  const scenario = program.command('scenario').description('run, list and validate YAML scenarios (workflows of checkouts, commands and checkins)');

  scenario
    .command('run <scenario>')
    .description('run a scenario: a file, or a name in <directory>/scenarios/; variables as --NAME value')
    .allowUnknownOption()
    .allowExcessArguments()
    .action((name: string, _opts: unknown, cmd: Command) =>
      act(async () => {
        const vars = scenarioVars(cmd.args.slice(1));
        const json = ctx.globals.json === true;
        const broker = ctx.broker();
        try {
          const result = await ctx.interruptible(
            (signal) =>
              broker.scenario(name, {
                vars,
                signal,
                ...(json ? {} : { onEvent: progress(ctx.io.stderr) }),
                // With --json, stdout is the result's; `output` steps to stdout go to stderr.
                stdout: json ? ctx.io.stderr : ctx.io.stdout,
                stderr: ctx.io.stderr,
              }),
            { stopping: (again) => `stopping the scenario and checking in its hosts (${again})` },
          );
          return { data: result, text: summary(result), exitCode: result.exitCode };
        } catch (error) {
          // Interrupted: the runner exits 128 + the signal's number, saying what happened.
          if (!(error instanceof ScenarioError) || !error.result || ctx.interrupted) throw error;
          const result = error.result as unknown as ScenarioResult;
          if (!json) ctx.io.stderr.write(`hostbroker: ${error.message}\n`);
          return { data: { ...result, error: error.toJSON() }, text: summary(result), exitCode: result.exitCode };
        }
      }),
    );

  scenario
    .command('list')
    .description('the scenarios in <directory>/scenarios/')
    .action(() =>
      act(async () => {
        const { listScenarios } = await import('../scenarios/index.js');
        const list = await listScenarios(ctx.broker().directory);
        const text = list.length
          ? table(
              ['NAME', 'STEPS', 'VALID', 'DESCRIPTION'],
              list.map((s) => [s.name, s.steps, s.valid ? 'yes' : 'NO', s.description]),
            )
          : `no scenarios in ${(await import('../scenarios/index.js')).scenarioDirectory(ctx.broker().directory)}\n`;
        return { data: list, text };
      }),
    );

  scenario
    .command('validate <scenario>')
    .description('check a scenario without running it; prints every problem, each with its step and key')
    .action((name: string) =>
      act(async () => {
        const { findScenario, validateScenario } = await import('../scenarios/index.js');
        const file = await findScenario(name, ctx.broker().directory);
        const { problems } = await validateScenario(file);
        const text = problems.length
          ? `${file}: ${problems.length} problem${problems.length > 1 ? 's' : ''}\n${problems.map((p) => `  - ${p.step ? `step "${p.step}", ` : ''}${p.key}: ${p.message}`).join('\n')}\n`
          : `${file}: valid\n`;
        return { data: { file, valid: problems.length === 0, problems }, text, exitCode: problems.length ? ScenarioError.exitCode : 0 };
      }),
    );
}
