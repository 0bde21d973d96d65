/**
 * The `hostbroker` command line: builds the commander program and runs it. Every command
 * returns data; the runner prints it (a table or YAML for people, JSON with `--json`), writes it
 * to `--output-file`, and turns errors into messages and exit codes (`exitCode` of the error's
 * class; 2 for bad usage; 1 for anything unexpected).
 * @module
 */
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { BrokerError } from '../errors.js';
import { scrub } from '../secrets.js';
import { CliContext, SIGNAL_EXIT, type CommandResult } from './context.js';
import { yaml } from './format.js';
import { registerForgetCommand } from './forget.js';
import { registerHostCommands } from './hosts.js';
import { BACKGROUND_COMMANDS, finishJob, registerJobsCommand, startBackground, takeJobFile } from './jobs.js';
import { registerProviderCommands } from './providers.js';
import { registerScenarioCommands } from './scenario.js';
import { registerServeCommand } from './serve.js';
import { registerSshCommand } from './ssh.js';
import { registerTopologyCommands } from './topology.js';

const LOG_LEVELS = ['silent', 'error', 'warn', 'info', 'debug', 'trace'];

/** The package version (from source or from dist). */
function version(): string {
  const require = createRequire(import.meta.url);
  for (const path of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = require(path) as { name?: string; version?: string };
      if (pkg.name === 'hostbroker' && pkg.version) return pkg.version;
    } catch {
      // try the next layout
    }
  }
  return '0.0.0';
}

/** Options accepted before the command and after it (`up` and `output` take `--json [file]`). */
function addGlobalOptions(cmd: Command, json = true): Command {
  if (json) cmd.option('--json', 'print results as JSON');
  return cmd
    .option('--output-file <file>', 'also write the result as JSON to this file (replaced)')
    .addOption(new Option('--log-level <level>', 'log detail on stderr').choices(LOG_LEVELS))
    .option('--directory <dir>', 'broker directory (settings + inventory; default $BROKER_DIRECTORY, else ~/.broker)');
}

/** What a run ends with. */
export interface RunOutcome {
  exitCode: number;
}

/** Runs the CLI with these arguments (without `node` and the script). */
export async function run(
  argv: readonly string[],
  io: CliContext['io'] = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
): Promise<RunOutcome> {
  const jobFile = await takeJobFile();
  const program = new Command('hostbroker');
  const ctx = new CliContext(program, io);
  let active: Command = program;
  program
    .description('Check hosts out of providers, keep track of them, and check them in again.')
    .version(version(), '-V, --version', 'print the version')
    .enablePositionalOptions()
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: (s, write) => write(`hostbroker: ${s.replace(/^error: /, '')}`),
    })
    .hook('preAction', (_self, actionCommand) => {
      active = actionCommand;
    });
  addGlobalOptions(program);

  const act = async (fn: () => Promise<CommandResult>): Promise<void> => {
    ctx.result = active.opts().background ? await startBackground(ctx, argv) : await fn();
  };
  registerHostCommands(program, ctx, act);
  registerProviderCommands(program, ctx, act);
  registerTopologyCommands(program, ctx, act);
  registerSshCommand(program, ctx, act);
  registerScenarioCommands(program, ctx, act);
  registerJobsCommand(program, ctx, act);
  registerForgetCommand(program, ctx, act);
  registerServeCommand(program, ctx, act);
  // Subcommands (`scenario run`) take the global options too.
  for (const cmd of program.commands.flatMap((c) => [c, ...c.commands])) {
    addGlobalOptions(cmd, !['up', 'output'].includes(cmd.name()));
    if (BACKGROUND_COMMANDS.includes(cmd.name())) cmd.option('-b, --background', 'run in a detached process (see `hostbroker jobs`)');
    cmd.exitOverride().configureOutput(program.configureOutput());
  }
  // Global options may come before or after the command; the command's copy wins.
  ctx.globalsOverride = () => ({ ...program.opts(), ...pickGlobals(active === program ? {} : active.opts()) });

  let exitCode = 0;
  let outputData: unknown;
  try {
    await program.parseAsync(argv, { from: 'user' });
    const result = ctx.result;
    if (result) {
      ctx.progress.clear();
      outputData = result.data;
      if (ctx.globals.json) io.stdout.write(`${scrub(JSON.stringify(result.data ?? null, null, 2))}\n`);
      else if (result.text !== undefined) io.stdout.write(scrub(result.text));
      else if (result.data !== undefined && result.exitCode === undefined) io.stdout.write(scrub(yaml(result.data)));
      exitCode = result.exitCode ?? 0;
    }
  } catch (error) {
    ctx.progress.clear();
    if (error instanceof CommanderError) {
      // --help and --version end here with code 0; usage errors were printed by commander.
      exitCode = error.exitCode === 0 ? 0 : 2;
      if (exitCode !== 0) outputData = { error: { name: 'UsageError', code: 'USER_INPUT', message: error.message.replace(/^error: /, '') } };
    } else {
      // Aborted by SIGINT/SIGTERM: the error says what was released; the status says why.
      exitCode = ctx.interrupted ? SIGNAL_EXIT[ctx.interrupted] : exitCodeOf(error);
      const message = error instanceof Error ? error.message : String(error);
      io.stderr.write(
        scrub(`hostbroker: ${message}`) +
          (exitCode === 1 && error instanceof Error && ctx.globals.logLevel === 'debug' ? `\n${scrub(error.stack ?? '')}` : '') +
          '\n',
      );
      outputData = { error: BrokerError.isInstance(error) ? error.toJSON() : { name: error instanceof Error ? error.name : 'Error', message } };
    }
  } finally {
    await ctx.close().catch(() => undefined);
  }
  const outputFile = safeGlobals(ctx).outputFile;
  if (outputFile && outputData !== undefined) {
    try {
      writeFileSync(outputFile, `${scrub(JSON.stringify(outputData, null, 2))}\n`, { mode: 0o600 });
    } catch (error) {
      io.stderr.write(`hostbroker: cannot write --output-file ${outputFile}: ${(error as Error).message}\n`);
      if (exitCode === 0) exitCode = 1;
    }
  }
  await finishJob(jobFile, exitCode).catch(() => undefined);
  return { exitCode };
}

function pickGlobals(opts: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ['outputFile', 'logLevel', 'directory']) if (opts[k] !== undefined) out[k] = opts[k];
  if (opts.json === true) out.json = true;
  return out;
}

function safeGlobals(ctx: CliContext): { outputFile?: string } {
  try {
    return ctx.globals;
  } catch {
    return {};
  }
}

/** The exit status for an error: its class's `exitCode`, 1 for errors that are not hostbroker's. */
export function exitCodeOf(error: unknown): number {
  if (!BrokerError.isInstance(error)) return 1;
  const code = (error.constructor as typeof BrokerError).exitCode;
  return typeof code === 'number' ? code : 1;
}
