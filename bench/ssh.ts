/**
 * `npm run bench:ssh`: hostbroker's SSH path against the OpenSSH client, on a real sshd that this
 * script starts on 127.0.0.1 (the test helper's sshd: `SetEnv SHLVL=1`, so root's .bashrc is
 * skipped alike for both clients).
 *
 * 1. Median latency of sequential `host.execute('true')` on a warm host vs `ssh -S` through a
 *    ControlMaster running the same command. Target: at most 0.5x.
 * 2. 200 concurrent `execute` on one host: zero failures, and at least 4x the throughput of
 *    running the same 200 one by one; measured for a quick command (`echo`), for one that waits
 *    50 ms, and, as the machine's ceiling, for 200 local processes started one by one vs at once
 *    (every remote command is a new process on the server).
 * 3. A 256 MiB file: upload with `session.write({ localPath })`, download with
 *    `session.downloadFile()`, vs `scp` and `scp -O` (both through the ControlMaster, so neither
 *    side pays for a key exchange). Target: at least 1.0x the faster scp. Files live on tmpfs
 *    (/dev/shm) when there is one: both sides run on this machine, and disk writeback would
 *    add noise to whichever transfer follows a big write.
 *
 * Rounds are interleaved (every scenario once per round) and figures are medians, because other
 * people's test runs share this machine; the load average is printed with the results. Each part
 * runs in a process of its own, so one part's leftovers do not move the next part's figures.
 * Environment: BENCH_ROUNDS (5), BENCH_EXECS (30 per round, part 1), BENCH_CONCURRENT (200),
 * BENCH_MIB (256), BENCH_ONLY (comma list of latency, concurrency, transfer).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../lib/broker/index.js';
import type { Host } from '../hosts/host.js';
import { sshdProvider } from '../test/helpers/providers.js';
import { startSshd } from '../test/helpers/sshd.js';
import { startMaster, type OpenSshMaster } from './lib/openssh.js';
import { load, median, table, timed, treeCpuMs } from './lib/stats.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const EXECS = Number(process.env.BENCH_EXECS ?? 30);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT ?? 200);
const MIB = Number(process.env.BENCH_MIB ?? 256);
const ONLY = new Set((process.env.BENCH_ONLY ?? 'latency,concurrency,transfer').split(','));
/** Set in a part's own process (see eachPartAlone): where it leaves its rows. */
const RESULT = process.env.BENCH_RESULT;

type Row = [string, string, string, string, string, string];
const rows: Row[] = [['measure', 'hostbroker', 'baseline', 'ratio', 'target', '']];
const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');
let serverNote = '';
const ms = (x: number) => `${x.toFixed(1)} ms`;
const mbs = (bytes: number, millis: number) => bytes / 1e6 / (millis / 1000);

async function latency(host: Host, master: OpenSshMaster): Promise<void> {
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < EXECS; i++) {
      // Alternate one by one so a burst of load hits both alike.
      a.push(
        await timed(async () => {
          const r = await host.execute('true');
          if (r.status !== 0) throw new Error(`true exited ${r.status}`);
        }),
      );
      b.push(await timed(() => master.exec('true')));
    }
    ours.push(...a);
    theirs.push(...b);
    console.log(`  latency round ${round + 1}: hostbroker ${ms(median(a))}, ssh -S ${ms(median(b))}  (load ${load()})`);
  }
  const ratio = median(ours) / median(theirs);
  rows.push(['1. execute(true), median latency', ms(median(ours)), `${ms(median(theirs))} (ssh -S)`, `${ratio.toFixed(2)}x`, '<= 0.5x', verdict(ratio <= 0.5)]);
}

/** `count` runs of `cmd` one by one and all at once: [one-by-one ms, concurrent ms, failures]. */
async function burst(host: Host, count: number, cmd: (i: number) => string): Promise<[number, number, number]> {
  let failures = 0;
  const run = async (i: number): Promise<void> => {
    try {
      const r = await host.execute(cmd(i));
      if (r.status !== 0 || r.stdout !== `${i}\n`) failures++;
    } catch {
      failures++;
    }
  };
  const seq = await timed(async () => {
    for (let i = 0; i < count; i++) await run(i);
  });
  const par = await timed(() => Promise.all(Array.from({ length: count }, (_, i) => run(i))));
  return [seq, par, failures];
}

/**
 * What this machine allows whatever the client: `count` local processes (`/bin/echo` through
 * xargs) started one by one and all at once. Every remote command is at least one new process.
 */
function machineCeiling(count: number): [number, number] {
  const xargs = (parallel: number) => {
    const started = performance.now();
    execFileSync('sh', ['-c', `seq ${count} | xargs -n 1 -P ${parallel} /bin/echo >/dev/null`]);
    return performance.now() - started;
  };
  return [xargs(1), xargs(count)];
}

async function concurrency(host: Host, sshdPid: number | undefined): Promise<void> {
  const quick = (i: number) => `echo ${i}`;
  // A command that waits as commands on real machines do (I/O, services): the pool overlaps the waits.
  const waiting = (i: number) => `sleep 0.05; echo ${i}`;
  // Warm-up: the first burst opens the pool's extra connections.
  await burst(host, CONCURRENT, quick);
  const t = { seq: [] as number[], par: [] as number[], waitSeq: [] as number[], waitPar: [] as number[], cpuSeq: [] as number[], cpuPar: [] as number[] };
  let failures = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const [seq, par, failed] = await burst(host, CONCURRENT, quick);
    const [waitSeq, waitPar, waitFailed] = await burst(host, CONCURRENT, waiting);
    const [cpuSeq, cpuPar] = machineCeiling(CONCURRENT);
    failures += failed + waitFailed;
    t.seq.push(seq);
    t.par.push(par);
    t.waitSeq.push(waitSeq);
    t.waitPar.push(waitPar);
    t.cpuSeq.push(cpuSeq);
    t.cpuPar.push(cpuPar);
    console.log(
      `  concurrency round ${round + 1}: echo ${ms(seq)} one by one, ${ms(par)} concurrent; sleep 0.05 ${ms(waitSeq)} / ${ms(waitPar)}; local processes ${ms(cpuSeq)} / ${ms(cpuPar)}  (load ${load()})`,
    );
  }
  // What one command costs the server (sshd's session process and the user's shell).
  const before = sshdPid === undefined ? undefined : await treeCpuMs(sshdPid);
  await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => host.execute(quick(i))));
  const after = sshdPid === undefined ? undefined : await treeCpuMs(sshdPid);
  const ceiling = median(t.cpuSeq) / median(t.cpuPar);
  if (before !== undefined && after !== undefined) {
    const cost = (after - before) / CONCURRENT;
    serverNote = [
      `Server CPU per command (sshd session + shell): ${cost.toFixed(1)} ms, so at most ~${((cpus().length * 1000) / cost).toFixed(0)} commands/s on ${cpus().length} CPUs whatever the client does.`,
      `Local processes started all at once ran ${ceiling.toFixed(2)}x as fast as one by one on this machine: where that is near 1x, process creation does not scale here, and no client can make short commands run 4x faster concurrently.`,
    ].join('\n');
  }
  const rate = (x: number) => `${((CONCURRENT / x) * 1000).toFixed(0)}/s`;
  const ratio = median(t.seq) / median(t.par);
  const waitRatio = median(t.waitSeq) / median(t.waitPar);
  rows.push([
    `2. ${CONCURRENT} concurrent execute('echo i')`,
    `${rate(median(t.par))}, ${failures} failed`,
    `${rate(median(t.seq))} one by one`,
    `${ratio.toFixed(2)}x`,
    '>= 4x, 0 failed',
    verdict(ratio >= 4 && failures === 0),
  ]);
  rows.push([
    `   same, 'sleep 0.05; echo i'`,
    `${rate(median(t.waitPar))}`,
    `${rate(median(t.waitSeq))} one by one`,
    `${waitRatio.toFixed(2)}x`,
    '>= 4x, 0 failed',
    verdict(waitRatio >= 4 && failures === 0),
  ]);
  rows.push([
    `   ceiling: ${CONCURRENT} local processes`,
    `${rate(median(t.cpuPar))} at once`,
    `${rate(median(t.cpuSeq))} one by one`,
    `${ceiling.toFixed(2)}x`,
    '(machine)',
    '',
  ]);
}

async function makeFile(path: string, bytes: number): Promise<string> {
  const fh = await open(path, 'w');
  const hash = createHash('sha256');
  for (let done = 0; done < bytes; ) {
    const chunk = randomBytes(Math.min(8 << 20, bytes - done));
    hash.update(chunk);
    await fh.write(chunk);
    done += chunk.length;
  }
  await fh.close();
  return hash.digest('hex');
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function transfer(host: Host, master: OpenSshMaster, local: string): Promise<void> {
  const bytes = MIB * 1024 * 1024;
  const src = join(local, 'src.bin');
  const digest = await makeFile(src, bytes);
  // The "remote" side is this machine: its files sit next to the local ones (see `scratch`).
  const remoteSrc = join(local, 'remote-src.bin');
  const remoteDest = join(local, 'remote-dest.bin');
  const localDest = join(local, 'dest.bin');
  await host.session.write({ localPath: src }, remoteSrc);

  const t: Record<string, number[]> = { up: [], upScp: [], upScpO: [], down: [], downScp: [], downScpO: [] };
  const scenarios: Array<[keyof typeof t, () => Promise<unknown>, string]> = [
    ['up', () => host.session.write({ localPath: src }, remoteDest), remoteDest],
    ['upScp', () => master.scp(src, master.remote(remoteDest), false), remoteDest],
    ['upScpO', () => master.scp(src, master.remote(remoteDest), true), remoteDest],
    ['down', () => host.session.downloadFile(remoteSrc, localDest), localDest],
    ['downScp', () => master.scp(master.remote(remoteSrc), localDest, false), localDest],
    ['downScpO', () => master.scp(master.remote(remoteSrc), localDest, true), localDest],
  ];
  for (let round = 0; round < ROUNDS; round++) {
    // Rotated each round: whoever runs right after a big write pays for the kernel flushing it.
    const order = [...scenarios.slice(round % scenarios.length), ...scenarios.slice(0, round % scenarios.length)];
    for (const [name, fn, dest] of order) {
      // The remote side is this machine too: remove the destination untimed so every run creates it.
      await rm(dest, { force: true });
      t[name]!.push(await timed(fn));
      if ((await stat(dest)).size !== bytes) throw new Error(`${name}: ${dest} has the wrong size`);
      if (round === 0 && (name === 'up' || name === 'down') && (await sha256(dest)) !== digest) throw new Error(`${name}: ${dest} differs from the source`);
    }
    const f = (k: keyof typeof t) => mbs(bytes, t[k]!.at(-1)!).toFixed(0);
    console.log(
      `  transfer round ${round + 1} (MB/s): up ${f('up')} vs scp ${f('upScp')} / scp -O ${f('upScpO')}; down ${f('down')} vs scp ${f('downScp')} / scp -O ${f('downScpO')}  (load ${load()})`,
    );
  }
  await rm(localDest, { force: true });
  const rate = (k: keyof typeof t) => mbs(bytes, median(t[k]!));
  for (const [dir, ours, scp, scpO, how] of [
    ['upload', 'up', 'upScp', 'upScpO', 'write({ localPath })'],
    ['download', 'down', 'downScp', 'downScpO', 'downloadFile()'],
  ] as const) {
    const best = Math.max(rate(scp), rate(scpO));
    const ratio = rate(ours) / best;
    rows.push([
      `3. ${MIB} MiB ${dir}, ${how}`,
      `${rate(ours).toFixed(0)} MB/s`,
      `scp ${rate(scp).toFixed(0)}, scp -O ${rate(scpO).toFixed(0)} MB/s`,
      `${ratio.toFixed(2)}x`,
      '>= 1.0x faster scp',
      verdict(ratio >= 1),
    ]);
  }
}

async function main(): Promise<void> {
  const startLoad = load();
  const sshd = await startSshd();
  const local = await mkdtemp(join(tmpdir(), 'hb-bench-ssh-'));
  const broker = new Broker({ directory: join(local, 'broker'), providers: [sshdProvider(sshd)] });
  const master = await startMaster(sshd, local);
  console.log(`bench:ssh — sshd on ${sshd.host}:${sshd.port}; ${ROUNDS} rounds; ${cpus().length} CPUs; load average at start ${startLoad}`);
  try {
    const host = await broker.checkout({ provider: 'sshd' });
    for (let i = 0; i < 5; i++) await host.execute('true');
    await master.exec('true');
    if (ONLY.has('latency')) await latency(host, master);
    if (ONLY.has('concurrency')) await concurrency(host, sshd.process.pid);
    if (ONLY.has('transfer')) {
      console.log(`  transfers: ${(host.session.transport as { bulkStreams?: number }).bulkStreams ?? 1} stream(s) per big file (ssh.bulkStreams: auto)`);
      // Files on tmpfs when there is one, so that disk writeback does not add noise to either side.
      const scratch = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'hb-bench-ssh-'));
      try {
        await transfer(host, master, scratch);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    }
    await host.checkin();
  } finally {
    await master.stop();
    await broker.close();
    await sshd.stop();
    await rm(local, { recursive: true, force: true });
  }
  if (RESULT) await writeFile(RESULT, JSON.stringify({ rows: rows.slice(1), serverNote }));
  else report(startLoad);
}

function report(startLoad: string): void {
  console.log('');
  console.log(table(rows));
  console.log('');
  if (serverNote) console.log(serverNote);
  console.log(`Load average (1/5/15 min) at start ${startLoad}, at end ${load()} on ${cpus().length} CPUs.`);
  console.log('This machine is shared with other test runs: figures move with the load; compare ratios from the same run.');
}

/**
 * Each part in a process of its own: what one part leaves behind (the garbage collector's state
 * after thousands of commands, a pool of 8 connections) moved the next part's figures by up to 2x.
 */
async function eachPartAlone(): Promise<void> {
  const startLoad = load();
  const dir = await mkdtemp(join(tmpdir(), 'hb-bench-parts-'));
  try {
    for (const part of ['latency', 'concurrency', 'transfer'].filter((p) => ONLY.has(p))) {
      const result = join(dir, `${part}.json`);
      const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
        stdio: 'inherit',
        env: { ...process.env, BENCH_ONLY: part, BENCH_RESULT: result },
      });
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      if (code !== 0) throw new Error(`the ${part} part exited ${code}`);
      const out = JSON.parse(await readFile(result, 'utf8')) as { rows: Row[]; serverNote: string };
      rows.push(...out.rows);
      if (out.serverNote) serverNote = out.serverNote;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  report(startLoad);
}

if (RESULT || ONLY.size === 1) await main();
else await eachPartAlone();
