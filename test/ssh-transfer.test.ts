/**
 * File transfers over SSH that users rely on beyond test/session.test.ts: streaming downloads,
 * big files split over several connections, and what is (not) left behind when one fails.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../lib/broker/index.js';
import { CommandError, UserInputError } from '../lib/errors.js';
import type { Host } from '../hosts/host.js';
import { SshTransport, isThisMachine } from '../hosts/ssh-transport.js';
import { sshdProvider } from './helpers/providers.js';
import { sshdAvailable, startSshd, type Sshd } from './helpers/sshd.js';

const available = sshdAvailable();
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe.skipIf(!available)('file transfers over SSH (real sshd)', () => {
  let sshd: Sshd;
  let broker: Broker;
  let host: Host;
  let local: string;

  beforeAll(async () => {
    sshd = await startSshd();
    local = await mkdtemp(join(tmpdir(), 'hb-transfer-'));
    // Four streams, as for a far host: on loopback `auto` would use one and skip the split path.
    broker = new Broker({ directory: join(local, 'broker'), providers: [sshdProvider(sshd)], settings: { ssh: { bulkStreams: 4 } } });
    host = await broker.checkout({ provider: 'sshd' });
  });
  afterAll(async () => {
    await broker?.checkin({ all: true }).catch(() => undefined);
    await broker?.close();
    await sshd?.stop();
  });

  it('uploads and downloads a file big enough to be split, byte for byte, with its mode', async () => {
    // 40 MiB + 3 bytes: two streams, the last range not a whole block.
    const data = randomBytes((40 << 20) + 3);
    const src = join(local, 'big.bin');
    await writeFile(src, data);
    const remote = `${sshd.dir}/split/big.bin`;
    await host.session.write({ localPath: src }, remote, { mode: 0o640 });
    expect(sha(await readFile(remote))).toBe(sha(data));
    expect((await stat(remote)).mode & 0o777).toBe(0o640);
    expect((await readdir(`${sshd.dir}/split`)).sort()).toEqual(['big.bin']);

    const back = join(local, 'big-back.bin');
    await host.session.downloadFile(remote, back);
    expect(sha(await readFile(back))).toBe(sha(data));
  });

  it('splits big transfers only to other machines when bulkStreams is auto', async () => {
    const auto = new Broker({ directory: join(local, 'broker-auto'), providers: [sshdProvider(sshd)] });
    try {
      const near = await auto.checkout({ provider: 'sshd' });
      await near.execute('true');
      // sshd on loopback shares this machine's CPUs: one stream, more would only compete for them.
      expect((near.session.transport as SshTransport).bulkStreams).toBe(1);
      expect((host.session.transport as SshTransport).bulkStreams).toBe(4);
      const data = randomBytes((33 << 20) + 1);
      await writeFile(join(local, 'auto.bin'), data);
      await near.session.write({ localPath: join(local, 'auto.bin') }, `${sshd.dir}/auto/auto.bin`);
      expect(sha(await readFile(`${sshd.dir}/auto/auto.bin`))).toBe(sha(data));
      await near.checkin();
    } finally {
      await auto.close();
    }
  });

  it('downloads small and empty files to disk', async () => {
    await writeFile(`${sshd.dir}/small.txt`, 'small\n');
    await writeFile(`${sshd.dir}/empty`, '');
    await host.session.downloadFile(`${sshd.dir}/small.txt`, join(local, 'small.txt'));
    await host.session.downloadFile(`${sshd.dir}/empty`, join(local, 'empty'));
    expect(await readFile(join(local, 'small.txt'), 'utf8')).toBe('small\n');
    expect((await stat(join(local, 'empty'))).size).toBe(0);
  });

  it('names the remote file a download could not read, and leaves no local file behind', async () => {
    const dest = join(local, 'missing-dl');
    const before = await readdir(local);
    const error = await host.session.downloadFile('/no/such/file', dest).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandError);
    expect((error as Error).message).toMatch(/cannot read \/no\/such\/file/);
    expect(await readdir(local)).toEqual(before);
  });

  it('refuses to upload a local file that does not exist, creating nothing remotely', async () => {
    const error = await host.session.write({ localPath: join(local, 'nope.bin') }, `${sshd.dir}/not-made/x`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserInputError);
    expect((error as Error).message).toContain('nope.bin');
    expect((await host.execute(`test -e ${sshd.dir}/not-made`)).status).not.toBe(0);
  });

  it('a split upload into a place it cannot write fails with the reason and leaves no temporary file', async () => {
    const src = join(local, 'split-fail.bin');
    await writeFile(src, randomBytes(40 << 20));
    await writeFile(`${sshd.dir}/a-file`, 'x');
    // The parent "directory" is a file, so mkdir -p fails in every stream.
    const error = await host.session.write({ localPath: src }, `${sshd.dir}/a-file/sub/x.bin`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommandError);
    expect((error as Error).message).toMatch(/cannot write .*a-file\/sub\/x\.bin/);
    expect((await readdir(sshd.dir)).filter((n) => n.includes('.hb-'))).toEqual([]);
  });
});

describe('which hosts count as this machine (one bulk stream under auto)', () => {
  it("loopback names and addresses, and this machine's own interface addresses, but not others", () => {
    for (const h of ['localhost', '127.0.0.1', '127.1.2.3', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isThisMachine(h), h).toBe(true);
    const own = Object.values(networkInterfaces())
      .flatMap((l) => l ?? [])
      .find((i) => !i.internal);
    if (own) expect(isThisMachine(own.address)).toBe(true);
    // TEST-NET addresses (RFC 5737 / 3849) are never assigned to a machine.
    for (const h of ['192.0.2.10', '2001:db8::1', 'example.test']) expect(isThisMachine(h), h).toBe(false);
    const far = new SshTransport({ connection: { kind: 'ssh', host: '192.0.2.10', port: 22, username: 'root' } });
    expect(far.bulkStreams).toBe(4);
  });
});
