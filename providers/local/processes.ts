/**
 * Finding and ending what a `local` host's commands started, shared by its server (on shutdown)
 * and the provider (on release, in case the server was killed before it could).
 * @module
 */
import { readdir, readFile } from 'node:fs/promises';

/**
 * Environment variable every command on a local host gets (not overridable by the client),
 * naming the host folder. Children inherit it, also through `nohup`, `setsid` and double forks,
 * so on Linux `/proc/<pid>/environ` (the environment at exec) ties any leftover process to its
 * host without the server having to be alive or to have recorded anything. Only a program
 * that clears its environment (`env -i`) escapes it.
 */
export const HOST_MARKER = 'HOSTBROKER_LOCAL_HOST';

/** Pids of live processes (not this one, not zombies) carrying the marker for `folder`; [] without /proc. */
export async function markedProcesses(folder: string): Promise<number[]> {
  const entry = `${HOST_MARKER}=${folder}`;
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid);
  const found = await Promise.all(
    pids.map(async (e) => {
      // Other users' processes refuse the read: they are not ours anyway.
      const environ = await readFile(`/proc/${e}/environ`, 'utf8').catch(() => '');
      return environ.split('\0').includes(entry) ? [Number(e)] : [];
    }),
  );
  return found.flat();
}

/** Whether a pid still runs (a zombie has finished: it only waits to be reaped). */
export async function running(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  // The state follows the command name in parentheses, which may itself hold ") ".
  return stat === undefined || stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

/**
 * Ends processes: SIGTERM, up to `graceMs` for them to go, then SIGKILL. `targets` is asked
 * again after the grace, so processes forked meanwhile are killed too. Negative numbers are
 * process groups (as for kill(2)).
 */
export async function endProcesses(targets: () => Promise<number[]>, graceMs: number): Promise<void> {
  const signal = (ids: number[], sig: NodeJS.Signals): void => {
    for (const id of ids) {
      try {
        process.kill(id, sig);
      } catch {
        // gone already
      }
    }
  };
  const first = await targets();
  if (first.length === 0) return;
  signal(first, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if ((await live(await targets())).length === 0) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  signal(await targets(), 'SIGKILL');
}

async function live(ids: number[]): Promise<number[]> {
  const out: number[] = [];
  for (const id of ids) {
    if (id < 0) {
      try {
        process.kill(id, 0);
        out.push(id);
      } catch {
        // the group is empty
      }
    } else if (await running(id)) out.push(id);
  }
  return out;
}
