/**
 * A small lab in network namespaces: this machine — bastion 1 — bastion 2 — target, each link a
 * veth pair with its own /30, no forwarding. Bastion 1 is reachable from here; bastion 2 only
 * from bastion 1; the target only from bastion 2. A real sshd runs in each namespace.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { startSshd, sshdAvailable, type Sshd } from '../helpers/sshd.js';

const run = promisify(execFile);

/** Why the lab cannot be built here (undefined: it can). Under CI a missing piece throws. */
export function labSkipReason(): string | undefined {
  const why =
    process.getuid?.() !== 0
      ? 'network namespaces need root'
      : !existsSync('/usr/sbin/ip') && !existsSync('/sbin/ip') && !existsSync('/usr/bin/ip')
        ? 'iproute2 (ip) is not installed'
        : !sshdAvailable()
          ? 'sshd is not installed'
          : !existsSync('/usr/bin/ssh-agent')
            ? 'ssh-agent (openssh-client) is not installed'
            : undefined;
  if (why && process.env.CI === 'true') throw new Error(`the jump-host lab cannot run in CI: ${why}; scripts/setup-test-env.sh installs iproute2 and OpenSSH.`);
  return why;
}

export interface Lab {
  /** The three sshds: bastion 1 (reachable from here), bastion 2 (from bastion 1), target (from bastion 2). */
  bastion1: Sshd;
  bastion2: Sshd;
  target: Sshd;
  namespaces: string[];
  /** Runs a command in a namespace. */
  exec(ns: string, ...cmd: string[]): Promise<{ stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

async function listening(ns: string, port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { stdout } = await run('ip', ['netns', 'exec', ns, 'ss', '-ltnH', `sport = :${port}`]).catch(() => ({ stdout: '' }));
    if (stdout.trim()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`sshd in ${ns} did not listen on port ${port}`);
}

/** Builds the namespaces and links, starts the three sshds. */
export async function startLab(): Promise<Lab> {
  const tag = randomBytes(3).toString('hex');
  const net = 16 + (randomBytes(1)[0]! % 200);
  const names = { b1: `hb-b1-${tag}`, b2: `hb-b2-${tag}`, t: `hb-t-${tag}` };
  const namespaces = Object.values(names);
  const ip = (...args: string[]) => run('ip', args);
  const inNs = (ns: string, ...args: string[]) => run('ip', ['netns', 'exec', ns, ...args]);
  const started: Sshd[] = [];
  const stop = async () => {
    for (const s of started) await s.stop().catch(() => undefined);
    for (const ns of namespaces) await ip('netns', 'del', ns).catch(() => undefined);
    // The root end of the first pair goes with its peer; delete it in case setup stopped half-way.
    await ip('link', 'del', `hb0${tag}`).catch(() => undefined);
    await ip('route', 'del', 'unreachable', `10.${net}.0.0/16`).catch(() => undefined);
  };
  try {
    for (const ns of namespaces) {
      await ip('netns', 'add', ns);
      await inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
    }
    // Nothing of the lab's range leaves this machine: only the bastion's /30 is routed here.
    await ip('route', 'add', 'unreachable', `10.${net}.0.0/16`);
    // here <-> b1: 10.<net>.1.0/30
    await ip('link', 'add', `hb0${tag}`, 'type', 'veth', 'peer', 'name', `hb1${tag}`);
    await ip('link', 'set', `hb1${tag}`, 'netns', names.b1);
    await ip('addr', 'add', `10.${net}.1.1/30`, 'dev', `hb0${tag}`);
    await ip('link', 'set', `hb0${tag}`, 'up');
    await inNs(names.b1, 'ip', 'addr', 'add', `10.${net}.1.2/30`, 'dev', `hb1${tag}`);
    await inNs(names.b1, 'ip', 'link', 'set', `hb1${tag}`, 'up');
    // b1 <-> b2: 10.<net>.2.0/30, b2 <-> t: 10.<net>.3.0/30
    for (const [i, a, b] of [
      [2, names.b1, names.b2],
      [3, names.b2, names.t],
    ] as const) {
      await ip('link', 'add', `hb${i}a${tag}`, 'type', 'veth', 'peer', 'name', `hb${i}b${tag}`);
      await ip('link', 'set', `hb${i}a${tag}`, 'netns', a);
      await ip('link', 'set', `hb${i}b${tag}`, 'netns', b);
      await inNs(a, 'ip', 'addr', 'add', `10.${net}.${i}.1/30`, 'dev', `hb${i}a${tag}`);
      await inNs(b, 'ip', 'addr', 'add', `10.${net}.${i}.2/30`, 'dev', `hb${i}b${tag}`);
      await inNs(a, 'ip', 'link', 'set', `hb${i}a${tag}`, 'up');
      await inNs(b, 'ip', 'link', 'set', `hb${i}b${tag}`, 'up');
    }
    const sshdIn = async (ns: string, listen: string) => {
      const s = await startSshd({
        listen,
        port: 22,
        wrap: ['ip', 'netns', 'exec', ns],
        waitFor: () => listening(ns, 22),
        extra: ['MaxSessions 64', 'MaxStartups 100:30:200'],
      });
      started.push(s);
      return s;
    };
    const bastion1 = await sshdIn(names.b1, `10.${net}.1.2`);
    const bastion2 = await sshdIn(names.b2, `10.${net}.2.2`);
    const target = await sshdIn(names.t, `10.${net}.3.2`);
    return { bastion1, bastion2, target, namespaces, exec: (ns, ...cmd) => inNs(ns, ...cmd), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
