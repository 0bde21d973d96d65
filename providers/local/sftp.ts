/**
 * A small SFTP subsystem over the local file system, so `sftp`/`scp` work against local hosts.
 * Relative paths resolve against the host's home directory.
 * @module
 */
import { constants, promises as fs, type Stats } from 'node:fs';
import { resolve } from 'node:path';
import ssh2 from 'ssh2';

const { STATUS_CODE, flagsToString } = ssh2.utils.sftp;

type SFTP = ssh2.SFTPWrapper;

interface Handle {
  file?: fs.FileHandle;
  dir?: { path: string; entries?: string[]; done: boolean };
}

function attrsOf(s: Stats): ssh2.Attributes {
  return { mode: s.mode, uid: s.uid, gid: s.gid, size: s.size, atime: Math.floor(s.atimeMs / 1000), mtime: Math.floor(s.mtimeMs / 1000) };
}

function longname(name: string, s: Stats): string {
  const type = s.isDirectory() ? 'd' : s.isSymbolicLink() ? 'l' : '-';
  const perms = [0o400, 0o200, 0o100, 0o40, 0o20, 0o10, 0o4, 0o2, 0o1].map((bit, i) => (s.mode & bit ? 'rwx'[i % 3] : '-')).join('');
  return `${type}${perms} 1 ${s.uid} ${s.gid} ${s.size} ${new Date(s.mtimeMs).toISOString().slice(0, 10)} ${name}`;
}

function codeOf(error: unknown): number {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return STATUS_CODE.NO_SUCH_FILE;
  if (code === 'EACCES' || code === 'EPERM') return STATUS_CODE.PERMISSION_DENIED;
  return STATUS_CODE.FAILURE;
}

/** Serves SFTP requests on a channel. */
export function serveSftp(sftp: SFTP, home: string): void {
  const handles = new Map<number, Handle>();
  let next = 0;
  const open = (h: Handle): Buffer => {
    const id = next++;
    handles.set(id, h);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(id);
    return b;
  };
  const get = (buf: Buffer): Handle | undefined => (buf.length === 4 ? handles.get(buf.readUInt32BE(0)) : undefined);
  const path = (p: string): string => resolve(home, p);
  const guard = (reqid: number, work: () => Promise<void>): void => {
    work().catch((error: unknown) => sftp.status(reqid, codeOf(error), (error as Error).message));
  };

  sftp.on('OPEN', (reqid, filename, flags, attrs) =>
    guard(reqid, async () => {
      const mode = flagsToString(flags) ?? 'r';
      const file = await fs.open(path(filename), mode, attrs.mode ?? 0o644);
      sftp.handle(reqid, open({ file }));
    }),
  );
  sftp.on('READ', (reqid, handle, offset, length) =>
    guard(reqid, async () => {
      const h = get(handle);
      if (!h?.file) return void sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
      const buf = Buffer.alloc(length);
      const { bytesRead } = await h.file.read(buf, 0, length, offset);
      if (bytesRead === 0) return void sftp.status(reqid, STATUS_CODE.EOF);
      sftp.data(reqid, buf.subarray(0, bytesRead));
    }),
  );
  sftp.on('WRITE', (reqid, handle, offset, data) =>
    guard(reqid, async () => {
      const h = get(handle);
      if (!h?.file) return void sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
      await h.file.write(data, 0, data.length, offset);
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('CLOSE', (reqid, handle) =>
    guard(reqid, async () => {
      const h = get(handle);
      if (!h) return void sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
      handles.delete(handle.readUInt32BE(0));
      await h.file?.close();
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('FSTAT', (reqid, handle) =>
    guard(reqid, async () => {
      const h = get(handle);
      if (!h?.file) return void sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
      sftp.attrs(reqid, attrsOf(await h.file.stat()));
    }),
  );
  sftp.on('FSETSTAT', (reqid, handle, attrs) =>
    guard(reqid, async () => {
      const h = get(handle);
      if (!h?.file) return void sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
      if (attrs.mode !== undefined) await h.file.chmod(attrs.mode & 0o7777);
      if (attrs.size !== undefined) await h.file.truncate(attrs.size);
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  for (const op of ['STAT', 'LSTAT'] as const) {
    sftp.on(op, (reqid: number, p: string) =>
      guard(reqid, async () => {
        sftp.attrs(reqid, attrsOf(op === 'STAT' ? await fs.stat(path(p)) : await fs.lstat(path(p))));
      }),
    );
  }
  sftp.on('SETSTAT', (reqid, p, attrs) =>
    guard(reqid, async () => {
      if (attrs.mode !== undefined) await fs.chmod(path(p), attrs.mode & 0o7777);
      if (attrs.size !== undefined) await fs.truncate(path(p), attrs.size);
      if (attrs.mtime !== undefined) await fs.utimes(path(p), attrs.atime ?? attrs.mtime, attrs.mtime);
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('OPENDIR', (reqid, p) =>
    guard(reqid, async () => {
      const full = path(p);
      await fs.access(full, constants.R_OK);
      if (!(await fs.stat(full)).isDirectory()) return void sftp.status(reqid, STATUS_CODE.FAILURE, 'not a directory');
      sftp.handle(reqid, open({ dir: { path: full, done: false } }));
    }),
  );
  sftp.on('READDIR', (reqid, handle) =>
    guard(reqid, async () => {
      const h = get(handle);
      if (!h?.dir) return void sftp.status(reqid, STATUS_CODE.FAILURE, 'bad handle');
      if (h.dir.done) return void sftp.status(reqid, STATUS_CODE.EOF);
      h.dir.done = true;
      const names = ['.', '..', ...(await fs.readdir(h.dir.path))];
      const entries = await Promise.all(
        names.map(async (filename) => {
          const s = await fs.lstat(resolve(h.dir!.path, filename));
          return { filename, longname: longname(filename, s), attrs: attrsOf(s) };
        }),
      );
      sftp.name(reqid, entries);
    }),
  );
  sftp.on('REALPATH', (reqid, p) =>
    guard(reqid, async () => {
      const full = path(p);
      const real = await fs.realpath(full).catch(() => full);
      sftp.name(reqid, [{ filename: real, longname: real, attrs: {} as ssh2.Attributes }]);
    }),
  );
  sftp.on('MKDIR', (reqid, p, attrs) =>
    guard(reqid, async () => {
      await fs.mkdir(path(p), { mode: attrs.mode ?? 0o755 });
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('RMDIR', (reqid, p) =>
    guard(reqid, async () => {
      await fs.rmdir(path(p));
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('REMOVE', (reqid, p) =>
    guard(reqid, async () => {
      await fs.unlink(path(p));
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('RENAME', (reqid, from, to) =>
    guard(reqid, async () => {
      await fs.rename(path(from), path(to));
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('READLINK', (reqid, p) =>
    guard(reqid, async () => {
      const target = await fs.readlink(path(p));
      sftp.name(reqid, [{ filename: target, longname: target, attrs: {} as ssh2.Attributes }]);
    }),
  );
  sftp.on('SYMLINK', (reqid, linkPath, targetPath) =>
    guard(reqid, async () => {
      await fs.symlink(targetPath, path(linkPath));
      sftp.status(reqid, STATUS_CODE.OK);
    }),
  );
  sftp.on('close', () => {
    for (const h of handles.values()) void h.file?.close();
    handles.clear();
  });
}
