/**
 * Background mode: `hostbroker checkout|checkin|duplicate|execute|up --background` starts the
 * same command in a detached hostbroker process (output to `<directory>/logs/<job>.log`) and
 * records the job in `<directory>/jobs/<job>.json`; `hostbroker jobs` lists the jobs and
 * `hostbroker jobs --wait ID` waits for one and exits with its status. A job that is killed
 * stays `running` in its file with a dead pid and is shown as `killed`; its hosts are left as any
 * killed process leaves them, for `checkin` or `reap`.
 * @module
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { lazySchema, z } from '../zod.js';
import { writeAtomic } from '../atomic-file.js';
import { UserInputError } from '../errors.js';
import { isProcessAlive } from '../identity.js';
import type { CliContext, CommandResult } from './context.js';
import { table } from './format.js';

/** Commands that may run in the background. */
export const BACKGROUND_COMMANDS = ['checkout', 'checkin', 'duplicate', 'execute', 'up'];

/** Environment variable that tells a background process its job file (removed once read). */
const JOB_ENV = 'HOSTBROKER_JOB_FILE';

const JobRecord = lazySchema(() =>
  z.object({
    id: z.string(),
    pid: z.number().int(),
    machine: z.string(),
    /** The command line, as given (without `--background`). */
    command: z.array(z.string()),
    startedAt: z.string(),
    state: z.enum(['running', 'succeeded', 'failed']),
    exitCode: z.number().int().optional(),
    endedAt: z.string().optional(),
    log: z.string(),
  }),
);
type JobRecord = z.infer<typeof JobRecord>;

/** What `jobs` shows: a running job whose process is gone was killed. */
type JobView = Omit<JobRecord, 'state'> & { state: JobRecord['state'] | 'killed' };

const jobsDir = (directory: string) => join(directory, 'jobs');

function view(job: JobRecord): JobView {
  const gone = job.state === 'running' && job.machine === hostname() && !isProcessAlive(job.pid);
  return gone ? { ...job, state: 'killed' } : job;
}

async function readJob(directory: string, id: string): Promise<JobRecord | undefined> {
  const text = await readFile(join(jobsDir(directory), `${id}.json`), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const parsed = JobRecord.safeParse(JSON.parse(text));
  return parsed.success ? parsed.data : undefined;
}

async function listJobs(directory: string): Promise<JobView[]> {
  const names = await readdir(jobsDir(directory)).catch(() => [] as string[]);
  const jobs = await Promise.all(names.filter((n) => n.endsWith('.json')).map((n) => readJob(directory, n.slice(0, -5))));
  return jobs
    .filter((j): j is JobRecord => j !== undefined)
    .map(view)
    .sort((a, b) => a.startedAt.localeCompare(b.startedAt));
}

/** The command line minus `--background`/`-b` (what the detached process runs). */
function withoutBackground(argv: readonly string[]): string[] {
  return argv.filter((a) => a !== '--background' && a !== '-b');
}

/**
 * Starts `argv` (without `--background`) in a detached hostbroker process and records its job.
 * The same entry point and Node flags as this process, so sources run under tsx too.
 */
export async function startBackground(ctx: CliContext, argv: readonly string[]): Promise<CommandResult> {
  const directory = ctx.broker().directory;
  const id = `job-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  mkdirSync(jobsDir(directory), { recursive: true, mode: 0o700 });
  mkdirSync(join(directory, 'logs'), { recursive: true, mode: 0o700 });
  const log = join(directory, 'logs', `${id}.log`);
  const file = join(jobsDir(directory), `${id}.json`);
  const command = withoutBackground(argv);
  const entry = fileURLToPath(new URL(`./main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));
  const nodeFlags = entry.endsWith('.ts') && !process.execArgv.some((a) => a.includes('tsx')) ? [...process.execArgv, '--import', 'tsx'] : process.execArgv;
  const fd = openSync(log, 'a', 0o600);
  let pid: number | undefined;
  try {
    const child = spawn(process.execPath, [...nodeFlags, entry, '--directory', directory, ...command], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, [JOB_ENV]: file },
    });
    pid = child.pid;
    child.unref();
  } finally {
    closeSync(fd);
  }
  if (pid === undefined) throw new UserInputError(`could not start the background process for \`${command.join(' ')}\`; see ${log}.`);
  const job: JobRecord = { id, pid, machine: hostname(), command, startedAt: new Date().toISOString(), state: 'running', log };
  await writeAtomic(file, `${JSON.stringify(job, null, 2)}\n`);
  return { data: { job: id, pid, log }, text: `started ${id} (pid ${pid}): ${command.join(' ')}\nlog: ${log}\nwait for it: hostbroker jobs --wait ${id}\n` };
}

/**
 * In a background process: its job file (taken out of the environment, so children do not
 * inherit it), once the parent has written it: from then on only this process writes it.
 */
export async function takeJobFile(): Promise<string | undefined> {
  const file = process.env[JOB_ENV];
  delete process.env[JOB_ENV];
  for (let i = 0; file && i < 100 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 50));
  return file;
}

/** Records how the background process ended. */
export async function finishJob(file: string | undefined, exitCode: number): Promise<void> {
  if (!file) return;
  const text = await readFile(file, 'utf8').catch(() => undefined);
  const parsed = text === undefined ? undefined : JobRecord.safeParse(JSON.parse(text));
  const base: JobRecord | undefined = parsed?.success ? parsed.data : undefined;
  if (!base) return;
  const done: JobRecord = { ...base, state: exitCode === 0 ? 'succeeded' : 'failed', exitCode, endedAt: new Date().toISOString() };
  await writeAtomic(file, `${JSON.stringify(done, null, 2)}\n`);
}

/** Waits until the job is no longer running (its process ended or is gone). */
async function waitFor(directory: string, id: string, signal: AbortSignal): Promise<JobView> {
  for (;;) {
    const job = await readJob(directory, id);
    if (!job) throw new UserInputError(`there is no job \`${id}\` in ${jobsDir(directory)}; \`hostbroker jobs\` lists them.`);
    const v = view(job);
    if (v.state !== 'running') return v;
    if (signal.aborted) throw new UserInputError(`stopped waiting for ${id}; it is still running (pid ${job.pid}).`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function registerJobsCommand(program: Command, ctx: CliContext, act: (fn: () => Promise<CommandResult>) => Promise<void>): void {
  program
    .command('jobs')
    .description('list background jobs (started with --background), or wait for one and exit with its status')
    .option('--wait <id>', 'wait until this job ends and exit with its exit status')
    .action((opts: { wait?: string }) =>
      act(async () => {
        const directory = ctx.broker().directory;
        if (opts.wait) {
          const job = await ctx.interruptible((signal) => waitFor(directory, opts.wait!, signal), { stopping: () => 'stopped waiting; the job goes on' });
          // A killed job has no status of its own: 1, as for any failure.
          const exitCode = job.exitCode ?? 1;
          return { data: job, text: `${job.id} ${job.state}${job.exitCode !== undefined ? ` (exit ${job.exitCode})` : ''}; log: ${job.log}\n`, exitCode };
        }
        const jobs = await listJobs(directory);
        const rows = jobs.map((j) => [j.id, j.state, j.exitCode === undefined ? '' : String(j.exitCode), String(j.pid), j.startedAt, j.command.join(' ')]);
        return { data: jobs, text: jobs.length ? table(['JOB', 'STATE', 'EXIT', 'PID', 'STARTED', 'COMMAND'], rows) : 'no background jobs\n' };
      }),
    );
}
