/**
 * The `local` host's SFTP server at the edges a real client rarely reaches: open flags, rename
 * rules, attributes, extensions, long listings, pipelined requests, what it cannot do (always a
 * status, never silence), a broken stream and the end of the session. Through ssh2's SFTP client
 * and, where that client cannot say it, raw SFTP packets.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, realpath, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import type { Host } from '../../hosts/host.js';

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;

let broker: Broker;
let host: Host;
let home: string;
let client: ssh2.Client;
let sftp: ssh2.SFTPWrapper;

async function connect(): Promise<ssh2.Client> {
  const c = host.record.connection;
  if (c?.kind !== 'ssh') throw new Error('local hosts are reached over SSH');
  const conn = new ssh2.Client();
  const privateKey = await readFile(c.privateKeyPath!);
  await new Promise<void>((resolve, reject) => {
    conn.once('ready', resolve).once('error', reject);
    conn.connect({ host: c.host, port: c.port, username: c.username, privateKey });
  });
  return conn;
}

beforeAll(async () => {
  broker = new Broker({ directory: await mkdtemp(join(tmpdir(), 'hb-local-sftp-')) });
  host = await broker.checkout({ provider: 'local' });
  home = await realpath(String(host.record.data.home));
  client = await connect();
  sftp = await new Promise((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
});
afterAll(async () => {
  client?.end();
  await host?.checkin();
  await broker?.close();
});

/** Calls an ssh2 SFTP method and resolves with its result or rejects with its status error. */
function call<T = void>(fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value as T))));
}

/** The SFTP status code of a failed call (undefined when it succeeded). */
async function statusOf(p: Promise<unknown>): Promise<number | undefined> {
  return p.then(
    () => undefined,
    (e: { code?: number }) => e.code,
  );
}

const open = (p: string, flags: number, attrs: ssh2.InputAttributes = {}) => call<Buffer>((cb) => sftp.open(p, flags, attrs, cb));
const close = (h: Buffer) => call((cb) => sftp.close(h, cb));
const write = (h: Buffer, data: Buffer, position: number) => call((cb) => sftp.write(h, data, 0, data.length, position, cb));
const { READ, WRITE, APPEND, CREAT, TRUNC, EXCL } = OPEN_MODE;

describe('local SFTP: paths', () => {
  it('realpath of "." and "" is the home directory, and relative paths start there', async () => {
    expect(await call<string>((cb) => sftp.realpath('.', cb))).toBe(home);
    expect(await call<string>((cb) => sftp.realpath('', cb))).toBe(home);
    // A missing last component is allowed (a target to create), a missing directory is not.
    expect(await call<string>((cb) => sftp.realpath('new-file', cb))).toBe(join(home, 'new-file'));
    expect(await statusOf(call((cb) => sftp.realpath('no-dir/new-file', cb)))).toBe(STATUS_CODE.NO_SUCH_FILE);
    await mkdir(join(home, 'real'));
    await symlink('real', join(home, 'alias'));
    expect(await call<string>((cb) => sftp.realpath('alias/../alias/./', cb))).toBe(join(home, 'real'));
    await write(await open('rel.txt', WRITE | CREAT), Buffer.from('relative'), 0);
    expect(await readFile(join(home, 'rel.txt'), 'utf8')).toBe('relative');
  });

  it('expand-path and home-directory expand ~ to the home directory', async () => {
    // Raw: ssh2 1.17's client writes this request with a wrong offset.
    const raw = await rawSession();
    const expand = (p: string) => raw.request(200, Buffer.concat([str('expand-path@openssh.com'), str(p)]));
    expect(firstName(await expand('~'))).toBe(home);
    await mkdir(join(home, 'tilde'));
    expect(firstName(await expand('~/tilde/..'))).toBe(home);
    const user = host.record.connection?.kind === 'ssh' ? host.record.connection.username : '';
    expect(firstName(await expand(`~${user}/tilde/new`))).toBe(join(home, 'tilde', 'new'));
    expect(status(await expand('~nosuchuser/x'))).toMatchObject({ code: STATUS_CODE.NO_SUCH_FILE, message: expect.stringContaining('nosuchuser') });
    raw.end();
    const homeDir = (sftp as unknown as { ext_home_dir(user: string, cb: (err: Error | undefined, dir: string) => void): void }).ext_home_dir.bind(sftp);
    expect(await call<string>((cb) => homeDir('', cb))).toBe(home);
  });
});

describe('local SFTP: open flags', () => {
  const file = (name: string, content: string) => writeFile(join(home, name), content).then(() => name);

  it('WRITE|CREAT without TRUNC (scp of OpenSSH 9) writes in place and keeps the rest', async () => {
    const h = await open(await file('inplace', '0123456789'), WRITE | CREAT);
    await write(h, Buffer.from('ab'), 2);
    await close(h);
    expect(await readFile(join(home, 'inplace'), 'utf8')).toBe('01ab456789');
    // And creates what is missing, with the mode asked for (under the umask).
    const created = await open('created', WRITE | CREAT, { mode: 0o600 });
    await close(created);
    expect((await stat(join(home, 'created'))).mode & 0o777).toBe(0o600);
  });

  it('TRUNC empties, APPEND writes at the end whatever the offset, READ|WRITE does both', async () => {
    await close(await open(await file('trunc', 'old content'), WRITE | TRUNC));
    expect(await readFile(join(home, 'trunc'), 'utf8')).toBe('');
    const h = await open(await file('append', 'start'), WRITE | APPEND);
    await write(h, Buffer.from('+end'), 0);
    await close(h);
    expect(await readFile(join(home, 'append'), 'utf8')).toBe('start+end');
    const rw = await open(await file('rw', 'hello'), READ | WRITE);
    await write(rw, Buffer.from('J'), 0);
    const buf = Buffer.alloc(5);
    await call((cb) => sftp.read(rw, buf, 0, 5, 0, (err) => cb(err)));
    await close(rw);
    expect(buf.toString()).toBe('Jello');
  });

  it('answers each impossible open with its status', async () => {
    await file('exists', 'x');
    expect(await statusOf(open('exists', WRITE | CREAT | EXCL))).toBe(STATUS_CODE.FAILURE);
    expect(await statusOf(open('missing', READ))).toBe(STATUS_CODE.NO_SUCH_FILE);
    expect(await statusOf(open('missing', WRITE))).toBe(STATUS_CODE.NO_SUCH_FILE);
    expect(await statusOf(open('no-dir/file', WRITE | CREAT))).toBe(STATUS_CODE.NO_SUCH_FILE);
    // A read-only handle refuses writes.
    const ro = await open('exists', READ);
    expect(await statusOf(write(ro, Buffer.from('y'), 0))).not.toBeUndefined();
    await close(ro);
    expect(await readFile(join(home, 'exists'), 'utf8')).toBe('x');
  });
});

describe('local SFTP: attributes, renames, links', () => {
  it('stat follows links, lstat does not, fstat reads the handle; setstat and fsetstat set mode, times and size', async () => {
    await writeFile(join(home, 'target'), '12345');
    await symlink('target', join(home, 'link'));
    const viaLink = await call<ssh2.Stats>((cb) => sftp.stat('link', cb));
    expect(viaLink.isFile()).toBe(true);
    expect(viaLink.size).toBe(5);
    expect((await call<ssh2.Stats>((cb) => sftp.lstat('link', cb))).isSymbolicLink()).toBe(true);
    await call((cb) => sftp.setstat('target', { mode: 0o640, atime: 1_500_000_000, mtime: 1_600_000_000 }, cb));
    const s = await stat(join(home, 'target'));
    expect([s.mode & 0o7777, Math.floor(s.atimeMs / 1000), Math.floor(s.mtimeMs / 1000)]).toEqual([0o640, 1_500_000_000, 1_600_000_000]);
    const h = await open('target', READ | WRITE);
    await call((cb) => sftp.fsetstat(h, { size: 2, mode: 0o600, atime: 1_000_000_000, mtime: 1_100_000_000 }, cb));
    const f = await call<ssh2.Stats>((cb) => sftp.fstat(h, cb));
    await close(h);
    expect([f.size, f.mode & 0o7777, f.mtime]).toEqual([2, 0o600, 1_100_000_000]);
    expect(await readFile(join(home, 'target'), 'utf8')).toBe('12');
  });

  it('plain rename never replaces a file; posix-rename does; hardlink links', async () => {
    await writeFile(join(home, 'r-a'), 'a');
    await writeFile(join(home, 'r-b'), 'b');
    expect(await statusOf(call((cb) => sftp.rename('r-a', 'r-b', cb)))).toBe(STATUS_CODE.FAILURE);
    expect([await readFile(join(home, 'r-a'), 'utf8'), await readFile(join(home, 'r-b'), 'utf8')]).toEqual(['a', 'b']);
    await mkdir(join(home, 'r-dir'));
    expect(await statusOf(call((cb) => sftp.rename('r-a', 'r-dir', cb)))).toBe(STATUS_CODE.FAILURE);
    await call((cb) => sftp.rename('r-a', 'r-c', cb));
    expect(await readFile(join(home, 'r-c'), 'utf8')).toBe('a');
    await expect(lstat(join(home, 'r-a'))).rejects.toMatchObject({ code: 'ENOENT' });
    await call((cb) => sftp.ext_openssh_rename('r-c', 'r-b', cb));
    expect(await readFile(join(home, 'r-b'), 'utf8')).toBe('a');
    await call((cb) => sftp.ext_openssh_hardlink('r-b', 'r-hard', cb));
    expect((await stat(join(home, 'r-hard'))).ino).toBe((await stat(join(home, 'r-b'))).ino);
    expect(await statusOf(call((cb) => sftp.rename('r-missing', 'r-x', cb)))).toBe(STATUS_CODE.NO_SUCH_FILE);
  });

  it('symlink (in the order ssh2 sends it) and readlink', async () => {
    await call((cb) => sftp.symlink('some/target', 'made-link', cb));
    expect(await readlink(join(home, 'made-link'))).toBe('some/target');
    expect(await call<string>((cb) => sftp.readlink('made-link', cb))).toBe('some/target');
    expect(await statusOf(call((cb) => sftp.readlink(`target-not-a-link-${randomBytes(2).toString('hex')}`, cb)))).toBe(STATUS_CODE.NO_SUCH_FILE);
  });

  it('mkdir with a mode, rmdir, remove; removing a directory or a missing file is a status', async () => {
    await call((cb) => sftp.mkdir('made-dir', { mode: 0o700 }, cb));
    expect((await stat(join(home, 'made-dir'))).mode & 0o777).toBe(0o700);
    expect(await statusOf(call((cb) => sftp.unlink('made-dir', cb)))).toBe(STATUS_CODE.FAILURE);
    await call((cb) => sftp.rmdir('made-dir', cb));
    expect(await statusOf(call((cb) => sftp.unlink('made-dir', cb)))).toBe(STATUS_CODE.NO_SUCH_FILE);
  });
});

describe('local SFTP: directories, extensions, throughput', () => {
  it('lists more entries than one reply holds, with . and .. and ls -l long names', async () => {
    await mkdir(join(home, 'many'));
    const names = Array.from({ length: 250 }, (_, i) => `file-${i}`);
    await Promise.all(names.map((n) => writeFile(join(home, 'many', n), 'x'.repeat(7))));
    await symlink('file-0', join(home, 'many', 'the-link'));
    const list = await call<ssh2.FileEntryWithStats[]>((cb) => sftp.readdir('many', cb));
    expect(list.map((e) => e.filename).sort()).toEqual([...names, 'the-link'].sort());
    const entry = list.find((e) => e.filename === 'file-7')!;
    expect(entry.longname).toMatch(/^-rw-r--r-- {4}1 \S+ +\S+ +7 [A-Z][a-z]{2} [ \d]\d (\d\d:\d\d| \d{4}) file-7$/);
    expect(list.find((e) => e.filename === 'the-link')!.longname).toMatch(/^lrwxrwxrwx .* the-link$/);
    // ssh2 hides . and ..; the raw listing shows them (sftp's `ls -a` does).
    const raw = await rawSession();
    const opened = await raw.request(11, str('many'));
    const handle = opened.subarray(9 + 4);
    const first = await raw.request(12, str(handle));
    expect(first[4]).toBe(104); // NAME
    expect(first.readUInt32BE(9)).toBe(100); // entries per reply, as OpenSSH
    expect(first.includes(Buffer.from('\0\0\0\x01.\0'))).toBe(true);
    raw.end();
  });

  it('statvfs, fstatvfs, fsync, copy-data and lsetstat', async () => {
    const vfs = await call<{ f_bsize: number; f_blocks: number; f_namemax: number }>((cb) => sftp.ext_openssh_statvfs('.', cb));
    expect(vfs.f_bsize).toBeGreaterThan(0);
    expect(vfs.f_blocks).toBeGreaterThan(0);
    expect(vfs.f_namemax).toBe(255);
    const data = randomBytes(300_000);
    await writeFile(join(home, 'copy-src'), data);
    const src = await open('copy-src', READ);
    const dst = await open('copy-dst', WRITE | CREAT | TRUNC);
    expect((await call<{ f_bsize: number }>((cb) => sftp.ext_openssh_fstatvfs(src, cb))).f_bsize).toBe(vfs.f_bsize);
    await call((cb) => sftp.ext_copy_data(src, 0, 0, dst, 0, cb));
    await call((cb) => sftp.ext_openssh_fsync(dst, (err) => cb(err)));
    await close(src);
    await close(dst);
    expect((await readFile(join(home, 'copy-dst'))).equals(data)).toBe(true);
    await symlink('copy-src', join(home, 'copy-link'));
    await call((cb) => sftp.ext_openssh_lsetstat('copy-link', { atime: 1_200_000_000, mtime: 1_300_000_000 }, cb));
    expect(Math.floor((await lstat(join(home, 'copy-link'))).mtimeMs / 1000)).toBe(1_300_000_000);
    expect(Math.floor((await stat(join(home, 'copy-src'))).mtimeMs / 1000)).not.toBe(1_300_000_000);
    expect(await statusOf(call((cb) => sftp.ext_openssh_lsetstat('copy-link', { mode: 0o600 }, cb)))).toBe(STATUS_CODE.OP_UNSUPPORTED);
  });

  it('moves 24 MiB each way with 64 requests in flight, byte for byte', async () => {
    const data = randomBytes(24 * 1024 * 1024 + 11);
    await writeFile(join(tmpdir(), `hb-sftp-up-${process.pid}`), data);
    await call((cb) => sftp.fastPut(join(tmpdir(), `hb-sftp-up-${process.pid}`), 'big.bin', { concurrency: 64, chunkSize: 200_000 }, cb));
    expect((await readFile(join(home, 'big.bin'))).equals(data)).toBe(true);
    await call((cb) => sftp.fastGet('big.bin', join(tmpdir(), `hb-sftp-down-${process.pid}`), { concurrency: 64, chunkSize: 200_000 }, cb));
    expect((await readFile(join(tmpdir(), `hb-sftp-down-${process.pid}`))).equals(data)).toBe(true);
  });
});

describe('local SFTP: raw protocol', () => {
  it('offers OpenSSH extensions and limits in its version', async () => {
    const raw = await rawSession();
    expect(raw.version).toBe(3);
    expect(raw.extensions).toMatchObject({
      'posix-rename@openssh.com': '1',
      'statvfs@openssh.com': '2',
      'limits@openssh.com': '1',
      'expand-path@openssh.com': '1',
    });
    const limits = await raw.request(200, str('limits@openssh.com'));
    expect(limits[4]).toBe(201); // EXTENDED_REPLY
    expect([0, 1, 2, 3].map((i) => Number(limits.readBigUInt64BE(9 + i * 8)))).toEqual([262144, 261120, 261120, 512]);
    raw.end();
  });

  it('answers what it cannot do with a status: unknown extension, unknown request, bad handle, short packet', async () => {
    const raw = await rawSession();
    expect(status(await raw.request(200, str('no-such-extension@example.com')))).toMatchObject({
      code: STATUS_CODE.OP_UNSUPPORTED,
      message: expect.stringContaining('no-such-extension@example.com'),
    });
    expect(status(await raw.request(99, Buffer.alloc(0)))).toMatchObject({ code: STATUS_CODE.OP_UNSUPPORTED, message: expect.stringContaining('99') });
    expect(status(await raw.request(4, str(Buffer.from([0, 0, 0, 77]))))).toMatchObject({ code: STATUS_CODE.FAILURE, message: 'invalid handle' });
    // OPEN with its path but no flags: the packet ends too soon.
    expect(status(await raw.request(3, str('x')))).toMatchObject({ code: STATUS_CODE.BAD_MESSAGE });
    // Users and groups by id, packed as OpenSSH does (ssh2's client reads this reply wrongly).
    const ids = Buffer.alloc(8);
    ids.writeUInt32BE(0, 0);
    ids.writeUInt32BE(4_000_000_000, 4);
    const byId = await raw.request(200, Buffer.concat([str('users-groups-by-id@openssh.com'), str(ids), str(Buffer.alloc(0))]));
    expect(byId[4]).toBe(201);
    expect(byId.subarray(9)).toEqual(Buffer.concat([str(Buffer.concat([str('root'), str('')])), str(Buffer.alloc(0))]));
    // Still serving after all that.
    expect(status(await raw.request(14, Buffer.concat([str('raw-made'), Buffer.alloc(4)])))).toMatchObject({ code: STATUS_CODE.OK });
    raw.end();
  });

  it('answers every one of 2000 requests sent at once, in order', async () => {
    const raw = await rawSession();
    const replies = await raw.burst(2000, (id) => packet(17, id, str(id % 2 ? '.' : 'no-such-file')));
    expect(replies.map((r) => r.readUInt32BE(5))).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1000));
    expect(replies.map((r) => r[4])).toEqual(Array.from({ length: 2000 }, (_, i) => (i % 2 ? 105 : 101)));
    raw.end();
  });

  it("ends the session on the client's EOF: exit status 0, EOF, close, open files closed", async () => {
    const raw = await rawSession();
    await raw.request(3, Buffer.concat([str('left-open'), u32(0x1a), u32(0)]));
    const ended = raw.ended();
    raw.channel.end(); // EOF only; the server must close
    expect(await ended).toEqual({ exit: 0, eof: true });
    expect(await serverHolds(join(home, 'left-open'))).toBe(false);
  });

  it('a client that drops its connection mid-session leaves no file open', async () => {
    const raw = await rawSession();
    await raw.request(3, Buffer.concat([str('dropped'), u32(0x1a), u32(0)]));
    expect(await serverHolds(join(home, 'dropped'))).toBe(true);
    raw.drop();
    for (let i = 0; i < 200 && (await serverHolds(join(home, 'dropped'))); i++) await new Promise((r) => setTimeout(r, 10));
    expect(await serverHolds(join(home, 'dropped'))).toBe(false);
  });

  it('a stream it cannot read ends with exit status 1 and says why on stderr', async () => {
    for (const bad of [packet(3, 1, str('before-init')), Buffer.from([0xff, 0, 0, 0, 1])]) {
      const raw = await rawSession({ init: false });
      const ended = raw.ended();
      raw.channel.write(bad);
      expect(await ended).toMatchObject({ exit: 1 });
      expect(raw.stderr()).toMatch(/^sftp: (request type 3 before INIT|a packet of \d+ bytes)/);
    }
  });
});

/** Whether the host's server process has a file open (its descriptors in /proc). */
async function serverHolds(path: string): Promise<boolean> {
  const fds = `/proc/${Number(host.record.data.pid)}/fd`;
  const targets = await Promise.all((await readdir(fds)).map((fd) => readlink(join(fds, fd)).catch(() => '')));
  return targets.includes(path);
}

// ---- a minimal raw SFTP client (independent of the server's own encoder) ----

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
function str(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  return Buffer.concat([u32(b.length), b]);
}
function packet(type: number, id: number, body: Buffer): Buffer {
  return Buffer.concat([u32(body.length + 5), Buffer.from([type]), u32(id), body]);
}
/** The first file name of a NAME reply. */
function firstName(reply: Buffer): string {
  expect(reply[4]).toBe(104);
  return reply.subarray(17, 17 + reply.readUInt32BE(13)).toString();
}
function status(reply: Buffer): { code: number; message: string } {
  expect(reply[4]).toBe(101);
  const length = reply.readUInt32BE(13);
  return { code: reply.readUInt32BE(9), message: reply.subarray(17, 17 + length).toString() };
}

interface RawSession {
  channel: ssh2.ClientChannel;
  version: number;
  extensions: Record<string, string>;
  /** Sends one request and resolves with its whole reply packet (length included). */
  request(type: number, body: Buffer): Promise<Buffer>;
  /** Sends n requests in one write (ids from 1000) and resolves with the n replies. */
  burst(n: number, make: (id: number) => Buffer): Promise<Buffer[]>;
  ended(): Promise<{ exit: number | undefined; eof: boolean }>;
  stderr(): string;
  end(): void;
  /** Drops the TCP connection without a word. */
  drop(): void;
}

async function rawSession(options: { init?: boolean } = {}): Promise<RawSession> {
  const conn = await connect();
  const channel = await new Promise<ssh2.ClientChannel>((resolve, reject) => conn.subsys('sftp', (err, ch) => (err ? reject(err) : resolve(ch))));
  let pending = Buffer.alloc(0);
  const waiting: ((p: Buffer) => void)[] = [];
  let errText = '';
  let exit: number | undefined;
  let eof = false;
  channel.stderr.on('data', (d: Buffer) => (errText += String(d)));
  channel.on('exit', (code: number) => (exit = code));
  channel.on('end', () => (eof = true));
  const closed = new Promise<void>((resolve) => channel.on('close', () => resolve()));
  closed.then(() => conn.end()).catch(() => undefined);
  channel.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
      const p = pending.subarray(0, 4 + pending.readUInt32BE(0));
      pending = pending.subarray(p.length);
      waiting.shift()?.(p);
    }
  });
  const next = () => new Promise<Buffer>((resolve) => waiting.push(resolve));
  let version = 0;
  const extensions: Record<string, string> = {};
  if (options.init !== false) {
    const v = next();
    channel.write(Buffer.concat([u32(5), Buffer.from([1]), u32(3)]));
    const reply = await v;
    version = reply.readUInt32BE(5);
    for (let p = 9; p < reply.length; ) {
      const nl = reply.readUInt32BE(p);
      const name = reply.subarray(p + 4, p + 4 + nl).toString();
      p += 4 + nl;
      const dl = reply.readUInt32BE(p);
      extensions[name] = reply.subarray(p + 4, p + 4 + dl).toString();
      p += 4 + dl;
    }
  }
  let id = 0;
  return {
    channel,
    version,
    extensions,
    request(type, body) {
      const reply = next();
      channel.write(packet(type, ++id, body));
      return reply;
    },
    async burst(n, make) {
      const replies = Array.from({ length: n }, next);
      channel.write(Buffer.concat(Array.from({ length: n }, (_, i) => make(1000 + i))));
      return Promise.all(replies);
    },
    async ended() {
      await closed;
      return { exit, eof };
    },
    stderr: () => errText,
    end: () => channel.end(),
    drop: () => conn.destroy(),
  };
}
