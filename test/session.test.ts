import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile, mkdir, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../lib/broker/index.js';
import { HostConnectionError, TimeoutError, UserInputError } from '../lib/errors.js';
import type { Host } from '../hosts/host.js';
import { sshdProvider } from './helpers/providers.js';
import { sshdAvailable, startSshd, type Sshd } from './helpers/sshd.js';

const available = sshdAvailable();

describe.skipIf(!available)('sessions against a real OpenSSH sshd', () => {
  let sshd: Sshd;
  let broker: Broker;
  let host: Host;
  let directory: string;

  beforeAll(async () => {
    sshd = await startSshd();
    directory = await mkdtemp(join(tmpdir(), 'hb-session-'));
    broker = new Broker({ directory, providers: [sshdProvider(sshd)] });
    host = await broker.checkout({ provider: 'sshd' });
  });
  afterAll(async () => {
    await broker?.checkin({ all: true }).catch(() => undefined);
    await broker?.close();
    await sshd?.stop();
  });

  it('returns status, stdout and stderr without throwing on a non-zero exit', async () => {
    const r = await host.execute('echo out; echo err >&2; exit 7');
    expect(r).toMatchObject({ status: 7, stdout: 'out\n', stderr: 'err\n', command: 'echo out; echo err >&2; exit 7' });
  });

  it('passes env values exactly, runs in cwd, and feeds stdin', async () => {
    const value = `it's "quoted" $HOME \`x\``;
    const r = await host.execute('printf %s "$V"; echo; pwd; cat', { env: { V: value }, cwd: '/tmp', input: 'from stdin' });
    expect(r.stdout).toBe(`${value}\n/tmp\nfrom stdin`);
  });

  it('refuses a cwd that does not exist instead of running elsewhere', async () => {
    const error = await host.execute('touch should-not-exist', { cwd: '/no/such/dir' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserInputError);
    expect((error as Error).message).toContain('/no/such/dir does not exist');
    expect((await host.execute('test -e should-not-exist')).status).not.toBe(0);
  });

  it('ends a command that runs past its timeout, with its children, and names the command and the limit', async () => {
    const pidFile = `${sshd.dir}/timeout-child.pid`;
    const cmd = `sleep 30 & echo $! > ${pidFile}; wait`;
    const error = await host.execute(cmd, { timeout: 500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as Error).message).toContain(`\`${cmd}\``);
    expect((error as Error).message).toContain('500 ms');
    // The remote command's child is gone too, not left running.
    const pid = (await readFile(pidFile, 'utf8')).trim();
    let alive = true;
    for (let i = 0; i < 40 && alive; i++) {
      alive = (await host.execute(`kill -0 ${pid}`)).status === 0;
      if (alive) await new Promise((r) => setTimeout(r, 50));
    }
    expect(alive).toBe(false);
  });

  it('round-trips binary files, empty files, and a 100 MB file with its mode', async () => {
    const bin = randomBytes(1 << 20);
    await host.session.write(bin, `${sshd.dir}/files/bin`);
    expect(Buffer.compare(await host.session.read(`${sshd.dir}/files/bin`), bin)).toBe(0);
    await host.session.write('', `${sshd.dir}/files/empty`, { mode: 0o600 });
    expect((await host.session.read(`${sshd.dir}/files/empty`)).length).toBe(0);
    expect((await host.execute(`stat -c %a ${sshd.dir}/files/empty`)).stdout.trim()).toBe('600');

    const local = join(directory, 'big.bin');
    const big = randomBytes(100 * 1024 * 1024);
    await writeFile(local, big);
    await host.session.write({ localPath: local }, `${sshd.dir}/files/big.bin`);
    const back = await host.session.read(`${sshd.dir}/files/big.bin`);
    expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
  });

  it('says which file could not be read', async () => {
    await expect(host.session.read('/no/such/file')).rejects.toThrow(/cannot read \/no\/such\/file.*No such file/);
  });

  it('uploads and downloads directories, and copies between hosts', async () => {
    const src = join(directory, 'tree');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'a.txt'), 'A');
    await writeFile(join(src, 'sub', 'b.bin'), randomBytes(1000));
    await host.session.upload(src, `${sshd.dir}/up`);
    expect((await host.execute(`cat ${sshd.dir}/up/a.txt`)).stdout).toBe('A');
    const dest = join(directory, 'down');
    await host.session.download(`${sshd.dir}/up`, dest);
    expect(await readFile(join(dest, 'sub', 'b.bin'))).toEqual(await readFile(join(src, 'sub', 'b.bin')));

    await using other = await broker.checkout({ provider: 'sshd' });
    await host.session.copyTo(other, `${sshd.dir}/up/a.txt`, `${sshd.dir}/copied/a.txt`);
    expect(String(await other.session.read(`${sshd.dir}/copied/a.txt`))).toBe('A');
    await host.session.copyTo(other, `${sshd.dir}/up`, `${sshd.dir}/copied-dir`);
    expect((await readdir(join(sshd.dir, 'copied-dir', 'sub'))).length).toBe(1);
  });

  it('runs 200 concurrent commands on one host (more than sshd MaxSessions) and all succeed', async () => {
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => host.execute(`echo ${i}`)));
    const wrong = results.filter((r, i) => r.status !== 0 || r.stdout !== `${i}\n`);
    expect(wrong).toEqual([]);
  });

  it('opens an interactive shell with a terminal', async () => {
    const shell = await host.session.shell();
    let out = '';
    shell.stdout.on('data', (d: Buffer) => (out += String(d)));
    shell.stdin.write('echo sum=$((20+22)); tty; exit\n');
    await shell.exit;
    expect(out).toContain('sum=42');
    expect(out).toMatch(/\/dev\/pts\//);
  });

  it('follows a growing file with tail', async () => {
    const file = `${sshd.dir}/growing.log`;
    await host.session.write('', file);
    const tail = host.session.tail(file);
    const lines: string[] = [];
    const reading = (async () => {
      for await (const line of tail) {
        lines.push(line);
        if (lines.length === 2) tail.stop();
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    await host.execute(`echo one >> ${file}; echo two >> ${file}`);
    await reading;
    expect(lines).toEqual(['one', 'two']);
  });

  it('records the host key on first use and refuses a changed one', async () => {
    const record = await broker.find(host.id);
    expect(record?.connection?.kind === 'ssh' && record.connection.hostKey).toMatch(/^SHA256:/);
    const forged = { ...record!, connection: { ...(record!.connection as object), hostKey: 'SHA256:not-this-one' } } as typeof record & object;
    const imposter = broker.reconstruct({ ...forged, id: 'hb-forged' } as never);
    await expect(imposter.execute('true')).rejects.toThrow(/host key .* changed/);
  });

  it('gives a clear error when sshd dies mid-command, and reconnects afterwards', async () => {
    const running = host.execute('sleep 20').catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 300));
    await sshd.kill();
    const error = await running;
    expect(error).toBeInstanceOf(HostConnectionError);
    expect((error as Error).message).toMatch(/dropped while `sleep 20` ran/);
    await sshd.restart();
    const r = await host.execute('echo back');
    expect(r.stdout).toBe('back\n');
  });
});
