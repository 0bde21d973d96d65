/**
 * The real OpenSSH clients against every kind of host this machine can run: `ssh`, `scp` (SFTP
 * and `-O` legacy protocol), `sftp` (batch and commands on stdin) and `rsync -e ssh`, each with its
 * own connection and through a ControlMaster/ControlPersist connection exactly as Ansible opens
 * it. `static` runs against a real sshd, so the same expectations are checked against OpenSSH's
 * own server. What the clients leave is checked on the host through hostbroker's session.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import type { Host } from '../../hosts/host.js';
import { SSHD_IMAGE, probeEngine, removeBrokerContainers, skipReason } from '../helpers/engine.js';
import {
  remote,
  rsyncArgv,
  runClient,
  runOk,
  scpArgv,
  sftpArgv,
  sshArgv,
  stopMaster,
  targetOf,
  type ClientOptions,
  type SshTarget,
} from '../helpers/openssh.js';
import { freePort, startSshd, sshdAvailable, type Sshd } from '../helpers/sshd.js';

function missingClients(): string | false {
  const missing = ['ssh', 'scp', 'sftp', 'rsync'].filter((c) => {
    try {
      execFileSync('sh', ['-c', `command -v ${c}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return false;
  const why = `${missing.join(', ')} missing: scripts/setup-test-env.sh installs openssh-client and rsync`;
  if (process.env.CI === 'true') throw new Error(why);
  return why;
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** A host of one provider, checked out for the whole describe block. */
interface Kind {
  name: string;
  skip: string | false;
  checkout(): Promise<{ host: Host; knownHostsFile: string; cleanup(): Promise<void> }>;
}

const engineProbe = await probeEngine([SSHD_IMAGE]);
const kinds: Kind[] = [
  {
    name: 'local',
    skip: false,
    async checkout() {
      const directory = await mkdtemp(join(tmpdir(), 'hb-ossh-local-'));
      const broker = new Broker({ directory });
      const host = await broker.checkout({ provider: 'local' });
      return {
        host,
        knownHostsFile: broker.knownHostsFile,
        async cleanup() {
          await broker.checkin({ all: true });
          await broker.close();
          await rm(directory, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'container over SSH',
    skip: skipReason(engineProbe),
    async checkout() {
      const directory = await mkdtemp(join(tmpdir(), 'hb-ossh-container-'));
      const broker = new Broker({ directory, settings: { container: { reapGrace: 0 } } as never });
      try {
        const host = await broker.checkout({ provider: 'container', image: SSHD_IMAGE, ssh: true });
        return {
          host,
          knownHostsFile: broker.knownHostsFile,
          async cleanup() {
            await broker.checkin({ all: true }).catch(() => undefined);
            await broker.close();
            if (engineProbe.engine) await removeBrokerContainers(engineProbe.engine, broker.brokerId);
            await rm(directory, { recursive: true, force: true });
          },
        };
      } catch (error) {
        if (engineProbe.engine) await removeBrokerContainers(engineProbe.engine, broker.brokerId);
        throw error;
      }
    },
  },
  {
    name: 'static (real sshd)',
    skip: sshdAvailable() ? false : `${'/usr/sbin/sshd'} is missing`,
    async checkout() {
      const sshd: Sshd = await startSshd();
      const directory = await mkdtemp(join(tmpdir(), 'hb-ossh-static-'));
      const machine = { name: 'sshd1', hostname: sshd.host, port: sshd.port, username: sshd.username, privateKeyPath: sshd.privateKeyPath };
      const broker = new Broker({ directory, settings: { static: { hosts: [machine] } } });
      const host = await broker.checkout({ provider: 'static', name: 'sshd1' });
      return {
        host,
        knownHostsFile: broker.knownHostsFile,
        async cleanup() {
          await broker.checkin({ all: true });
          await broker.close();
          await sshd.stop();
          await rm(directory, { recursive: true, force: true });
        },
      };
    },
  },
];

const clientsSkip = missingClients();

for (const kind of kinds) {
  const skip = clientsSkip || kind.skip;
  describe.skipIf(Boolean(skip))(`OpenSSH clients against ${kind.name}${skip ? ` (skipped: ${skip})` : ''}`, { timeout: 120_000 }, () => {
    let host: Host;
    let cleanup: () => Promise<void> = async () => undefined;
    let knownHostsFile: string;
    let target: SshTarget;
    /** Scratch directory on this machine. */
    let here: string;
    /** A directory on the host, relative to the login directory (what relative paths start at). */
    let rel: string;
    /** The same directory, absolute. */
    let abs: string;
    let controlPath: string;
    /** Run on the host through hostbroker (not the client under test). */
    const onHost = async (command: string): Promise<string> => {
      const r = await host.execute(command);
      if (r.status !== 0) throw new Error(`on the host, ${command} exited ${r.status}: ${r.stderr}`);
      return r.stdout;
    };

    beforeAll(async () => {
      ({ host, cleanup, knownHostsFile } = await kind.checkout());
      target = targetOf(host.record, knownHostsFile);
      here = await mkdtemp(join(tmpdir(), 'hb-ossh-'));
      controlPath = join(here, 'cm');
      rel = `hb-ossh-${randomBytes(4).toString('hex')}`;
      abs = (await onHost(`mkdir ${rel} && cd ${rel} && pwd -P`)).trim();
    });
    afterAll(async () => {
      if (target) await stopMaster(target, controlPath);
      if (host) await host.execute(`rm -rf ${rel}`).catch(() => undefined);
      await cleanup();
      if (here) await rm(here, { recursive: true, force: true });
    });

    for (const shared of [false, true]) {
      const via = shared ? 'through a ControlMaster' : 'on its own connection';
      const opts = (): ClientOptions => (shared ? { controlPath } : {});
      const sub = shared ? 'shared' : 'own';

      it(`ssh ${via}: output, stderr, exit status, signal, stdin, a shell, a terminal`, async () => {
        const r = await runClient(sshArgv(target, 'echo out; echo err >&2; exit 7', opts()));
        expect(r).toMatchObject({ status: 7, stdout: 'out\n', stderr: 'err\n' });
        // Killed by a signal: ssh's own 255.
        expect((await runClient(sshArgv(target, 'kill -TERM $$', opts()))).status).toBe(255);
        // No command: the shell reads stdin, quietly (no prompt without a terminal; sshd may print a motd).
        const shell = await runClient(sshArgv(target, undefined, opts()), { input: 'echo from-shell\nexit 4\n' });
        expect(shell).toMatchObject({ status: 4, stderr: '' });
        expect(shell.stdout).toMatch(/(^|\n)from-shell\n$/);
        // More than the channel window (2 MiB) each way, and the login directory as cwd.
        const input = randomBytes(1536 * 1024).toString('hex');
        const echoed = await runOk(sshArgv(target, 'cat', opts()), { input });
        expect(sha(echoed.stdout)).toBe(sha(input));
        const pwd = await runOk(sshArgv(target, `cd ${rel} && pwd -P`, opts()));
        expect(pwd.stdout.trim()).toBe(abs);
        const tty = await runOk(sshArgv(target, 'tty', { ...opts(), tty: true }));
        expect(tty.stdout).toMatch(/^\/dev\/pts\/\d+\r?\n$/);
      });

      it(`scp ${via}: upload and download byte for byte, SFTP and legacy protocol, relative and absolute paths`, async () => {
        const big = randomBytes(3 * 1024 * 1024 + 17);
        const small = randomBytes(1000);
        await writeFile(join(here, 'big.bin'), big);
        await writeFile(join(here, 'small.bin'), small);
        await chmod(join(here, 'small.bin'), 0o640);
        const mtime = 1_600_000_000;
        await utimes(join(here, 'small.bin'), mtime, mtime);
        await onHost(`mkdir -p ${rel}/scp-${sub}`);
        for (const legacy of [false, true]) {
          for (const where of ['relative', 'absolute'] as const) {
            const dir = `${where === 'relative' ? rel : abs}/scp-${sub}`;
            const name = `${legacy ? 'legacy' : 'sftp'}-${where}`;
            const scp = (from: string[], to: string, extra: { preserve?: boolean } = {}) => runOk(scpArgv(target, from, to, { ...opts(), legacy, ...extra }));
            await scp([join(here, 'big.bin')], remote(target, `${dir}/${name}`));
            expect((await onHost(`sha256sum ${dir}/${name}`)).split(' ')[0]).toBe(sha(big));
            // Over a longer file: the result is the new file, not its head over the old tail.
            await scp([join(here, 'small.bin')], remote(target, `${dir}/${name}`), { preserve: true });
            expect(await onHost(`sha256sum < ${dir}/${name}; stat -c '%s %a %Y' ${dir}/${name}`)).toBe(`${sha(small)}  -\n1000 640 ${mtime}\n`);
            // Into a directory: the file keeps its name.
            await scp([join(here, 'big.bin')], remote(target, `${dir}/`));
            const back = join(here, `back-${name}`);
            await scp([remote(target, `${dir}/big.bin`)], back);
            expect(sha(await readFile(back))).toBe(sha(big));
            await scp([remote(target, `${dir}/${name}`)], back, { preserve: true });
            expect(sha(await readFile(back))).toBe(sha(small));
            expect(Math.floor((await stat(back)).mtimeMs / 1000)).toBe(mtime);
            await onHost(`rm ${dir}/big.bin ${dir}/${name}`);
          }
          // ~ is the login directory (SFTP: the expand-path extension; legacy: the remote shell).
          await runOk(scpArgv(target, [join(here, 'small.bin')], remote(target, `~/${rel}/scp-${sub}/tilde`), { ...opts(), legacy }));
          expect(await onHost(`sha256sum < ${abs}/scp-${sub}/tilde && rm ${abs}/scp-${sub}/tilde`)).toBe(`${sha(small)}  -\n`);
          // A missing source is an error naming it, not a hang or a silent success.
          const missing = await runClient(scpArgv(target, [remote(target, `${rel}/no-such-file`)], join(here, 'never'), { ...opts(), legacy }));
          expect(missing.status).not.toBe(0);
          expect(missing.stderr).toContain('no-such-file');
        }
      });

      it(`scp -r ${via}: a directory tree up and back, SFTP and legacy protocol`, async () => {
        const tree = join(here, `scp-tree-${sub}`);
        await mkdir(join(tree, 'x', 'y'), { recursive: true });
        await writeFile(join(tree, 'top.txt'), 'top\n');
        await writeFile(join(tree, 'x', 'y', 'deep.bin'), randomBytes(300_000), { mode: 0o600 });
        await mkdir(join(tree, 'x', 'empty'));
        for (const legacy of [false, true]) {
          const there = `${rel}/scp-tree-${sub}-${legacy ? 'legacy' : 'sftp'}`;
          await runOk(scpArgv(target, [tree], remote(target, there), { ...opts(), legacy, recursive: true, preserve: true }));
          expect(await onHost(`cd ${there} && find . | sort && stat -c %a x/y/deep.bin`)).toBe('.\n./top.txt\n./x\n./x/empty\n./x/y\n./x/y/deep.bin\n600\n');
          const back = join(here, `scp-back-${sub}-${legacy}`);
          await runOk(scpArgv(target, [remote(target, there)], back, { ...opts(), legacy, recursive: true, preserve: true }));
          expect(await snapshot(back)).toEqual(await snapshot(tree));
        }
      });

      it(`sftp -b ${via}: mkdir, put, rename, chmod, symlink, ln, ls -l, get, rm, rmdir`, async () => {
        const data = randomBytes(200_000);
        await writeFile(join(here, 'put.bin'), data);
        const d = `${rel}/sftp-${sub}`;
        const batch = [
          `mkdir ${d}`,
          `put ${join(here, 'put.bin')} ${d}/a.bin`,
          `rename ${d}/a.bin ${d}/b.bin`,
          `chmod 640 ${d}/b.bin`,
          `symlink b.bin ${d}/link`,
          `ln ${d}/b.bin ${d}/hard`,
          `mkdir ${d}/empty`,
          `ls -l ${d}`,
          `get ${d}/link ${join(here, `via-link-${sub}.bin`)}`,
          `rm ${d}/hard`,
          `rmdir ${d}/empty`,
          `df ${d}`,
        ].join('\n');
        const r = await runOk(sftpArgv(target, { ...opts(), batch: '-' }), { input: `${batch}\n` });
        // `ls -l`: type and mode, links ('?' when the client formats the line), owner, group, size, name.
        const user = (await onHost('id -un')).trim();
        expect(r.stdout).toMatch(new RegExp(`^-rw-r-----\\s+[2?] ${user}\\s+\\S+\\s+200000 .+ \\S*b\\.bin$`, 'm'));
        expect(r.stdout).toMatch(/^lrwxrwxrwx\s+[1?] .+ \S*link$/m);
        expect(r.stdout).toMatch(/^d[rwx-]{9}\s+[\d?]+ .+ \S*empty$/m);
        expect(r.stdout).toMatch(/Size\s+Used\s+Avail/);
        expect(sha(await readFile(join(here, `via-link-${sub}.bin`)))).toBe(sha(data));
        expect(await onHost(`cd ${d} && ls -A && stat -c %a b.bin && readlink link && sha256sum < b.bin`)).toBe(`b.bin\nlink\n640\nb.bin\n${sha(data)}  -\n`);
      });

      it(`sftp ${via}: a failing command stops the batch with exit 1 and names the file`, async () => {
        const d = `${rel}/fail-${sub}`;
        await onHost(`mkdir -p ${d}`);
        const r = await runClient(sftpArgv(target, { ...opts(), batch: '-' }), { input: `get ${d}/missing ${join(here, 'x')}\nmkdir ${d}/after\n` });
        expect(r.status).toBe(1);
        expect(r.stderr).toContain('missing');
        expect(await onHost(`ls -A ${d}`)).toBe('');
        // A leading '-' lets the batch go on, as sftp documents.
        await runOk(sftpArgv(target, { ...opts(), batch: '-' }), { input: `-rm ${d}/missing\nmkdir ${d}/after\n` });
        expect(await onHost(`ls -A ${d}`)).toBe('after\n');
      });

      it(`sftp ${via}: commands on stdin without -b, as typed`, async () => {
        const d = `${rel}/stdin-${sub}`;
        await onHost(`mkdir -p ${d} && printf typed > ${d}/in.txt`);
        const r = await runOk(sftpArgv(target, opts()), {
          input: `cd ${d}\npwd\nget in.txt ${join(here, `typed-${sub}.txt`)}\nrename in.txt out.txt\nls\nbye\n`,
        });
        expect(r.stdout).toContain(`Remote working directory: ${abs}/stdin-${sub}`);
        expect(await readFile(join(here, `typed-${sub}.txt`), 'utf8')).toBe('typed');
        expect(await onHost(`ls ${d}`)).toBe('out.txt\n');
      });
    }

    it('rsync copies a directory tree through a ControlMaster; unchanged, it copies nothing again', async () => {
      const tree = join(here, 'tree');
      await mkdir(join(tree, 'a', 'b', 'c'), { recursive: true });
      await mkdir(join(tree, 'empty'));
      for (let i = 0; i < 30; i++) await writeFile(join(tree, 'a', `f${i}.txt`), `file ${i}\n`.repeat(i * 50));
      await writeFile(join(tree, 'a', 'b', 'c', 'blob.bin'), randomBytes(2 * 1024 * 1024 + 5));
      await writeFile(join(tree, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
      await writeFile(join(tree, 'empty.txt'), '');
      await symlink('a/b/c/blob.bin', join(tree, 'link'));
      const o = { controlPath };
      await runOk(rsyncArgv(target, ['-a', '--delete', `${tree}/`, remote(target, `${rel}/tree/`)], o));
      const back = join(here, 'tree-back');
      await runOk(rsyncArgv(target, ['-a', remote(target, `${rel}/tree/`), `${back}/`], o));
      expect(await snapshot(back)).toEqual(await snapshot(tree));
      // `find` counts the top directory too.
      const entries = (await snapshot(tree)).length + 1;
      expect(await onHost(`cd ${rel}/tree && readlink link && stat -c %a run.sh && find . | wc -l`)).toBe(`a/b/c/blob.bin\n755\n${entries}\n`);
      const again = await runOk(rsyncArgv(target, ['-a', '--delete', '--stats', `${tree}/`, remote(target, `${rel}/tree/`)], o));
      expect(again.stdout).toMatch(/Number of regular files transferred: 0\b/);
      // The master really was up all along (and still is).
      expect((await runClient(['ssh', '-O', 'check', '-o', `ControlPath=${controlPath}`, target.host])).status).toBe(0);
    });

    it('serves several commands and transfers at once through one master', async () => {
      const d = `${rel}/together`;
      await runOk(sshArgv(target, `mkdir -p ${d}`, { controlPath }));
      // A port nothing listens on: a client that did not go through the master fails.
      const through = { controlPath, extra: ['-o', `Port=${await freePort()}`] };
      const data = randomBytes(1024 * 1024);
      await writeFile(join(here, 'together.bin'), data);
      // Each command waits until all three are running: they overlap on the one connection.
      const waiter = (i: number) =>
        `cd ${d} && touch m.${i} && n=0; while [ "$(ls m.* | wc -l)" -lt 3 ]; do n=$((n+1)); [ $n -gt 600 ] && exit 9; sleep 0.05; done; echo ready ${i}`;
      const results = await Promise.all([
        ...[1, 2, 3].map((i) => runOk(sshArgv(target, waiter(i), through))),
        runOk(sftpArgv(target, { ...through, batch: '-' }), { input: `put ${join(here, 'together.bin')} ${d}/via-sftp.bin\n` }),
        runOk(scpArgv(target, [join(here, 'together.bin')], remote(target, `${d}/via-scp.bin`), through)),
      ]);
      expect(results.slice(0, 3).map((r) => r.stdout)).toEqual(['ready 1\n', 'ready 2\n', 'ready 3\n']);
      expect(await onHost(`cd ${d} && sha256sum < via-sftp.bin && sha256sum < via-scp.bin`)).toBe(`${sha(data)}  -\n`.repeat(2));
    });
  });
}

/** Every entry under a directory: path, type, mode, size, content hash or link target. */
async function snapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const full = join(dir, name);
      const s = await lstat(full);
      const what = s.isSymbolicLink() ? `-> ${await readlink(full)}` : s.isDirectory() ? 'dir' : sha(await readFile(full));
      out.push(`${relative(root, full)} ${(s.mode & 0o7777).toString(8)} ${s.isDirectory() ? '' : s.size} ${what}`);
      if (s.isDirectory()) await walk(full);
    }
  };
  await walk(root);
  return out;
}
