/**
 * What each SFTP request does on the host's file system, with OpenSSH's sftp-server as the
 * reference: its statuses for errno values, its open flags, its rename rule, its realpath, and
 * the OpenSSH extensions its clients use. One instance per SFTP session (it owns the handles).
 * @module
 */
import { constants, promises as fs, type Dir, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { BadMessage, PFLAGS, REQUEST, type Reader, STATUS, reply, type Attrs, type NameEntry } from './sftp-wire.js';
import { longname, nameLookup, type Names } from './sftp-longname.js';

/** OpenSSH's limits: a packet up to 256 KiB, reads and writes up to 1 KiB less. */
export const MAX_PACKET = 256 * 1024;
const MAX_DATA = MAX_PACKET - 1024;
const MAX_HANDLES = 512;
/** Directory entries per READDIR reply (as OpenSSH). */
const READDIR_BATCH = 100;

/** What the VERSION reply offers (name → version); each is served below. */
export const EXTENSIONS: Record<string, string> = {
  'posix-rename@openssh.com': '1',
  'statvfs@openssh.com': '2',
  'fstatvfs@openssh.com': '2',
  'hardlink@openssh.com': '1',
  'fsync@openssh.com': '1',
  'lsetstat@openssh.com': '1',
  'limits@openssh.com': '1',
  'expand-path@openssh.com': '1',
  'copy-data': '1',
  'home-directory': '1',
  'users-groups-by-id@openssh.com': '1',
};

type Handle = { path: string; file: fs.FileHandle } | { path: string; dir: Dir; started: boolean };

export interface SftpOptions {
  home: string;
  /** The login name `~user` expands for. */
  user: string;
  /** The client's identification line: which SYMLINK argument order it sends. */
  clientIdent: string;
}

/** An error answered with a chosen status (not an errno). */
class StatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const badHandle = (): StatusError => new StatusError(STATUS.FAILURE, 'invalid handle');

/** The status OpenSSH's sftp-server answers for an errno (errno_to_portable). */
function statusOf(error: unknown): number {
  if (error instanceof StatusError) return error.status;
  if (error instanceof BadMessage) return STATUS.BAD_MESSAGE;
  switch ((error as NodeJS.ErrnoException).code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EBADF':
    case 'ELOOP':
      return STATUS.NO_SUCH_FILE;
    case 'EPERM':
    case 'EACCES':
    case 'EFAULT':
      return STATUS.PERMISSION_DENIED;
    case 'ENAMETOOLONG':
    case 'EINVAL':
      return STATUS.BAD_MESSAGE;
    case 'ENOSYS':
    case 'ENOTSUP':
      return STATUS.OP_UNSUPPORTED;
    default:
      return STATUS.FAILURE;
  }
}

/** "No such file or directory (open /x)" from Node's "ENOENT: no such file or directory, open '/x'". */
function messageOf(error: unknown): string {
  const e = error as NodeJS.ErrnoException & { dest?: string };
  if (!e.code || !e.syscall) return e.message ?? String(error);
  const what = e.message.replace(/^[A-Z]+: /, '').split(', ')[0] ?? e.code;
  return `${what.charAt(0).toUpperCase()}${what.slice(1)} (${e.syscall}${e.path ? ` ${e.path}` : ''}${e.dest ? ` -> ${e.dest}` : ''})`;
}

function attrsOf(s: Stats): Attrs {
  return { size: s.size, uid: s.uid, gid: s.gid, mode: s.mode, atime: Math.floor(s.atimeMs / 1000), mtime: Math.floor(s.mtimeMs / 1000) };
}

/** open(2) flags for SSH_FXF_* flags, as OpenSSH's flags_from_portable. */
function openFlags(pflags: number): number {
  const read = pflags & PFLAGS.READ;
  const write = pflags & PFLAGS.WRITE;
  let flags = read && write ? constants.O_RDWR : write ? constants.O_WRONLY : constants.O_RDONLY;
  if (pflags & PFLAGS.APPEND) flags |= constants.O_APPEND;
  if (pflags & PFLAGS.CREAT) flags |= constants.O_CREAT;
  if (pflags & PFLAGS.TRUNC) flags |= constants.O_TRUNC;
  if (pflags & PFLAGS.EXCL) flags |= constants.O_EXCL;
  return flags;
}

interface AttrOps {
  truncate(size: number): Promise<void>;
  chmod(mode: number): Promise<void>;
  utimes(atime: number, mtime: number): Promise<void>;
  chown(uid: number, gid: number): Promise<void>;
}

/** Applies SETSTAT-style attributes in OpenSSH's order: size, mode, times, owner. */
async function applyAttrs(a: Attrs, ops: AttrOps): Promise<void> {
  if (a.size !== undefined) await ops.truncate(a.size);
  if (a.mode !== undefined) await ops.chmod(a.mode & 0o7777);
  if (a.atime !== undefined && a.mtime !== undefined) await ops.utimes(a.atime, a.mtime);
  if (a.uid !== undefined && a.gid !== undefined) await ops.chown(a.uid, a.gid);
}

/** Attribute changes by path (following symlinks). */
function pathOps(p: string): AttrOps {
  return {
    truncate: (size) => fs.truncate(p, size),
    chmod: (mode) => fs.chmod(p, mode),
    utimes: (at, mt) => fs.utimes(p, at, mt),
    chown: (uid, gid) => fs.chown(p, uid, gid),
  };
}

async function writeAll(file: fs.FileHandle, data: Buffer, offset: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const { bytesWritten } = await file.write(data, done, data.length - done, offset + done);
    done += bytesWritten;
  }
}

const okReply = (id: number): Buffer => reply.status(id, STATUS.OK, 'Success');
/** A NAME reply of one path (realpath, readlink, expand-path), as sftp-server sends it. */
const oneName = (id: number, name: string): Buffer => reply.name(id, [{ filename: name, longname: name, attrs: {} }]);

const exists = (p: string): Promise<boolean> =>
  fs.lstat(p).then(
    () => true,
    () => false,
  );

export class SftpRequests {
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 0;
  private readonly names: Promise<Names> = nameLookup();
  /**
   * OpenSSH's clients (and most others) send SYMLINK as (target, link), the reverse of the
   * draft; ssh2's client sends the draft's order to a server that is not OpenSSH (this one).
   */
  private readonly symlinkDraftOrder: boolean;

  constructor(private readonly options: SftpOptions) {
    this.symlinkDraftOrder = /^SSH-2\.0-ssh2js/.test(options.clientIdent);
  }

  /** The reply to one request: its result, or the status saying why not. */
  async answer(type: number, id: number, r: Reader): Promise<Buffer> {
    try {
      return await this.respond(type, id, r);
    } catch (error) {
      return reply.status(id, statusOf(error), messageOf(error));
    }
  }

  /** Closes every handle still open (the session ended). */
  async closeAll(): Promise<void> {
    const open = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(open.map((h) => ('file' in h ? h.file.close() : h.dir.close()).catch(() => undefined)));
  }

  /** Lexical join only: the file system resolves `..` after symlinks, as for sftp-server in $HOME. */
  private path(p: string): string {
    return p === '' ? this.options.home : p.startsWith('/') ? p : `${this.options.home}/${p}`;
  }

  private addHandle(h: Handle): Buffer {
    if (this.handles.size >= MAX_HANDLES) throw new StatusError(STATUS.FAILURE, `too many open handles (${MAX_HANDLES}); close some`);
    const id = this.nextHandle++ >>> 0;
    this.handles.set(id, h);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(id);
    return b;
  }

  /** Reads a handle from the request: its key and what it holds. */
  private handleOf(r: Reader): [number, Handle] {
    const b = r.bytes();
    const key = b.length === 4 ? b.readUInt32BE(0) : -1;
    const h = this.handles.get(key);
    if (!h) throw badHandle();
    return [key, h];
  }

  private fileOf(r: Reader): fs.FileHandle {
    const [, h] = this.handleOf(r);
    if (!('file' in h)) throw badHandle();
    return h.file;
  }

  /** realpath(3) where only the last component may be missing (what sftp-server allows). */
  private async canonical(p: string): Promise<string> {
    const full = this.path(p);
    try {
      return await fs.realpath(full);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      return join(await fs.realpath(dirname(full)), basename(full));
    }
  }

  /** `~` and `~<this user>` are the home directory; other users are not known here. */
  private expand(p: string): string {
    const m = /^~([^/]*)(\/.*)?$/.exec(p);
    if (!m) return p;
    const { user, home } = this.options;
    if (m[1] !== '' && m[1] !== user) throw new StatusError(STATUS.NO_SUCH_FILE, `no user ${m[1]} on this host (only ~ and ~${user})`);
    return `${home}${m[2] ?? ''}`;
  }

  private async respond(type: number, id: number, r: Reader): Promise<Buffer> {
    const ok = (): Buffer => okReply(id);
    const single = (name: string): Buffer => oneName(id, name);
    switch (type) {
      case REQUEST.OPEN: {
        const p = this.path(r.string());
        const pflags = r.u32();
        const a = r.attrs();
        const file = await fs.open(p, openFlags(pflags), a.mode !== undefined ? a.mode & 0o7777 : 0o666);
        return reply.handle(
          id,
          this.keep({ path: p, file }, () => file.close()),
        );
      }
      case REQUEST.CLOSE: {
        const [key, h] = this.handleOf(r);
        this.handles.delete(key);
        await ('file' in h ? h.file.close() : h.dir.close());
        return ok();
      }
      case REQUEST.READ: {
        const file = this.fileOf(r);
        const offset = r.u64();
        const length = Math.min(r.u32(), MAX_DATA);
        const buf = Buffer.alloc(length);
        const { bytesRead } = await file.read(buf, 0, length, offset);
        return bytesRead === 0 && length > 0 ? reply.status(id, STATUS.EOF, 'End of file') : reply.data(id, buf.subarray(0, bytesRead));
      }
      case REQUEST.WRITE: {
        const file = this.fileOf(r);
        const offset = r.u64();
        await writeAll(file, r.bytes(), offset);
        return ok();
      }
      case REQUEST.STAT:
        return reply.attrs(id, attrsOf(await fs.stat(this.path(r.string()))));
      case REQUEST.LSTAT:
        return reply.attrs(id, attrsOf(await fs.lstat(this.path(r.string()))));
      case REQUEST.FSTAT: {
        const [, h] = this.handleOf(r);
        return reply.attrs(id, attrsOf('file' in h ? await h.file.stat() : await fs.stat(h.path)));
      }
      case REQUEST.SETSTAT: {
        const p = this.path(r.string());
        await applyAttrs(r.attrs(), pathOps(p));
        return ok();
      }
      case REQUEST.FSETSTAT: {
        const [, h] = this.handleOf(r);
        const a = r.attrs();
        const noSize = (): Promise<void> => Promise.reject(new StatusError(STATUS.FAILURE, `${h.path} is a directory: it has no size to set`));
        await applyAttrs(a, 'file' in h ? h.file : { ...pathOps(h.path), truncate: noSize });
        return ok();
      }
      case REQUEST.OPENDIR: {
        const p = this.path(r.string());
        const dir = await fs.opendir(p, { bufferSize: READDIR_BATCH });
        return reply.handle(
          id,
          this.keep({ path: p, dir, started: false }, () => dir.close()),
        );
      }
      case REQUEST.READDIR:
        return this.readdir(id, r);
      case REQUEST.REMOVE:
        await fs.unlink(this.path(r.string()));
        return ok();
      case REQUEST.MKDIR: {
        const p = this.path(r.string());
        const a = r.attrs();
        await fs.mkdir(p, { mode: a.mode !== undefined ? a.mode & 0o7777 : 0o777 });
        return ok();
      }
      case REQUEST.RMDIR:
        await fs.rmdir(this.path(r.string()));
        return ok();
      case REQUEST.REALPATH:
        return single(await this.canonical(r.string()));
      case REQUEST.RENAME: {
        const from = this.path(r.string());
        await this.renameNoReplace(from, this.path(r.string()));
        return ok();
      }
      case REQUEST.READLINK:
        return single(await fs.readlink(this.path(r.string())));
      case REQUEST.SYMLINK: {
        const first = r.string();
        const second = r.string();
        const [link, target] = this.symlinkDraftOrder ? [first, second] : [second, first];
        await fs.symlink(target, this.path(link));
        return ok();
      }
      case REQUEST.EXTENDED:
        return this.extended(id, r.string(), r);
      default:
        return reply.status(id, STATUS.OP_UNSUPPORTED, `unsupported request type ${type}`);
    }
  }

  /** A new handle for what was just opened (closed again when no handle can be given). */
  private keep(h: Handle, close: () => Promise<void>): Buffer {
    try {
      return this.addHandle(h);
    } catch (error) {
      void close().catch(() => undefined);
      throw error;
    }
  }

  private async extended(id: number, name: string, r: Reader): Promise<Buffer> {
    const ok = (): Buffer => okReply(id);
    const single = (p: string): Buffer => oneName(id, p);
    switch (name) {
      case 'posix-rename@openssh.com': {
        const from = this.path(r.string());
        await fs.rename(from, this.path(r.string()));
        return ok();
      }
      case 'hardlink@openssh.com': {
        const from = this.path(r.string());
        await fs.link(from, this.path(r.string()));
        return ok();
      }
      case 'statvfs@openssh.com':
        return this.statvfs(id, this.path(r.string()));
      case 'fstatvfs@openssh.com':
        return this.statvfs(id, this.handleOf(r)[1].path);
      case 'fsync@openssh.com':
        await this.fileOf(r).sync();
        return ok();
      case 'lsetstat@openssh.com': {
        const p = this.path(r.string());
        await applyAttrs(r.attrs(), {
          truncate: () => Promise.reject(new StatusError(STATUS.BAD_MESSAGE, 'lsetstat does not set a size')),
          chmod: async (mode) => {
            // Linux cannot change a symlink's own mode.
            if ((await fs.lstat(p)).isSymbolicLink()) throw new StatusError(STATUS.OP_UNSUPPORTED, `cannot set the mode of symlink ${p} itself on Linux`);
            await fs.chmod(p, mode);
          },
          utimes: (at, mt) => fs.lutimes(p, at, mt),
          chown: (uid, gid) => fs.lchown(p, uid, gid),
        });
        return ok();
      }
      case 'limits@openssh.com':
        return reply.extended64(id, [MAX_PACKET, MAX_DATA, MAX_DATA, MAX_HANDLES]);
      case 'expand-path@openssh.com':
        return single(await this.canonical(this.expand(r.string())));
      case 'home-directory':
        return single(await this.canonical(this.expand(`~${r.string()}`)));
      case 'copy-data':
        await this.copyData(r);
        return ok();
      case 'users-groups-by-id@openssh.com': {
        const ids = (packed: Buffer): number[] => Array.from({ length: packed.length >> 2 }, (_, i) => packed.readUInt32BE(i * 4));
        const [uids, gids] = [ids(r.bytes()), ids(r.bytes())];
        const names = await this.names;
        return reply.namesById(
          id,
          uids.map((u) => names.user(u) ?? ''),
          gids.map((g) => names.group(g) ?? ''),
        );
      }
      default:
        return reply.status(id, STATUS.OP_UNSUPPORTED, `unsupported extension ${name}; this server supports ${Object.keys(EXTENSIONS).join(', ')}`);
    }
  }

  private async readdir(id: number, r: Reader): Promise<Buffer> {
    const [, h] = this.handleOf(r);
    if (!('dir' in h)) throw badHandle();
    const batch: string[] = h.started ? [] : ['.', '..'];
    h.started = true;
    while (batch.length < READDIR_BATCH) {
      const entry = await h.dir.read();
      if (!entry) break;
      batch.push(entry.name);
    }
    if (batch.length === 0) return reply.status(id, STATUS.EOF, 'End of file');
    const names = await this.names;
    const entries = await Promise.all(
      batch.map(async (filename): Promise<NameEntry | undefined> => {
        // An entry removed since the listing is left out, as sftp-server does.
        const s = await fs.lstat(join(h.path, filename)).catch(() => undefined);
        return s && { filename, longname: longname(filename, s, names), attrs: attrsOf(s) };
      }),
    );
    return reply.name(
      id,
      entries.filter((e): e is NameEntry => e !== undefined),
    );
  }

  /** Plain SSH_FXP_RENAME never replaces the target (OpenSSH: link + unlink, else a checked rename). */
  private async renameNoReplace(from: string, to: string): Promise<void> {
    if ((await fs.lstat(from)).isFile()) {
      try {
        await fs.link(from, to);
      } catch (error) {
        // Where hard links are not possible (Linux says EPERM for some file systems), fall back.
        if (!['EPERM', 'EXDEV', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'].includes(String((error as NodeJS.ErrnoException).code))) throw error;
        return this.checkedRename(from, to);
      }
      try {
        await fs.unlink(from);
      } catch (error) {
        await fs.unlink(to).catch(() => undefined);
        throw error;
      }
      return;
    }
    return this.checkedRename(from, to);
  }

  private async checkedRename(from: string, to: string): Promise<void> {
    if (await exists(to)) throw new StatusError(STATUS.FAILURE, `${to} exists; plain SFTP rename does not replace (use posix-rename)`);
    await fs.rename(from, to);
  }

  private async statvfs(id: number, p: string): Promise<Buffer> {
    const s = await fs.statfs(p);
    // f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, f_favail, f_fsid, f_flag, f_namemax
    return reply.extended64(id, [s.bsize, s.bsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.ffree, 0, 0, 255]);
  }

  /** copy-data: from one file handle to another; length 0 copies to the end of the source. */
  private async copyData(r: Reader): Promise<void> {
    const from = this.fileOf(r);
    let readOffset = r.u64();
    const length = r.u64();
    const to = this.fileOf(r);
    let writeOffset = r.u64();
    const buf = Buffer.alloc(64 * 1024);
    for (let left = length === 0 ? Infinity : length; left > 0; ) {
      const { bytesRead } = await from.read(buf, 0, Math.min(buf.length, left), readOffset);
      if (bytesRead === 0) break;
      await writeAll(to, buf.subarray(0, bytesRead), writeOffset);
      readOffset += bytesRead;
      writeOffset += bytesRead;
      left -= bytesRead;
    }
  }
}
