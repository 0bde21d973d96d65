/**
 * The SFTP version 3 wire format (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it): packet
 * framing, the request fields a server reads and the replies it writes.
 * @module
 */

export const REQUEST = {
  INIT: 1,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  LSTAT: 7,
  FSTAT: 8,
  SETSTAT: 9,
  FSETSTAT: 10,
  OPENDIR: 11,
  READDIR: 12,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  REALPATH: 16,
  STAT: 17,
  RENAME: 18,
  READLINK: 19,
  SYMLINK: 20,
  EXTENDED: 200,
} as const;

const REPLY = { VERSION: 2, STATUS: 101, HANDLE: 102, DATA: 103, NAME: 104, ATTRS: 105, EXTENDED_REPLY: 201 } as const;

export const STATUS = { OK: 0, EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4, BAD_MESSAGE: 5, OP_UNSUPPORTED: 8 } as const;

/** SSH_FXF_* open flags. */
export const PFLAGS = { READ: 0x1, WRITE: 0x2, APPEND: 0x4, CREAT: 0x8, TRUNC: 0x10, EXCL: 0x20 } as const;

const ATTR = { SIZE: 0x1, UIDGID: 0x2, PERMISSIONS: 0x4, ACMODTIME: 0x8, EXTENDED: 0x80000000 } as const;

/** File attributes; a field is absent when the packet does not carry it. */
export interface Attrs {
  size?: number;
  uid?: number;
  gid?: number;
  mode?: number;
  atime?: number;
  mtime?: number;
}

export interface NameEntry {
  filename: string;
  longname: string;
  attrs: Attrs;
}

/** A request shorter than its fields (answered with SSH_FX_BAD_MESSAGE). */
export class BadMessage extends Error {}

/** Reads the fields of one packet in order. */
export class Reader {
  private pos: number;
  constructor(
    private readonly buf: Buffer,
    start = 0,
  ) {
    this.pos = start;
  }

  private take(n: number): number {
    if (this.pos + n > this.buf.length) throw new BadMessage('the packet ends before its fields do');
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(): number {
    return this.buf[this.take(1)]!;
  }

  u32(): number {
    return this.buf.readUInt32BE(this.take(4));
  }

  u64(): number {
    const value = this.buf.readBigUInt64BE(this.take(8));
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new BadMessage('a 64-bit value beyond 2^53 (offset or length)');
    return Number(value);
  }

  bytes(): Buffer {
    const length = this.u32();
    const at = this.take(length);
    return this.buf.subarray(at, at + length);
  }

  string(): string {
    return this.bytes().toString('utf8');
  }

  attrs(): Attrs {
    const flags = this.u32();
    const attrs: Attrs = {};
    if (flags & ATTR.SIZE) attrs.size = this.u64();
    if (flags & ATTR.UIDGID) {
      attrs.uid = this.u32();
      attrs.gid = this.u32();
    }
    if (flags & ATTR.PERMISSIONS) attrs.mode = this.u32();
    if (flags & ATTR.ACMODTIME) {
      attrs.atime = this.u32();
      attrs.mtime = this.u32();
    }
    if (flags & ATTR.EXTENDED) {
      // Extended attributes (name/value pairs) are read past; nothing here applies them.
      for (let n = this.u32(); n > 0; n--) {
        this.bytes();
        this.bytes();
      }
    }
    return attrs;
  }
}

/** Cuts a byte stream into packets (type byte and payload, without the length). */
export class Framer {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxLength: number) {}

  /** The whole packets the chunk completes; throws when a packet claims more than maxLength. */
  push(chunk: Buffer): Buffer[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const packets: Buffer[] = [];
    while (this.pendingBytes >= 4) {
      const head = this.pending[0]!.length >= 4 ? this.pending[0]! : this.flatten();
      const length = head.readUInt32BE(0);
      if (length === 0 || length > this.maxLength) throw new BadMessage(`a packet of ${length} bytes (this server takes 1 to ${this.maxLength})`);
      if (this.pendingBytes < 4 + length) break;
      const all = this.flatten();
      packets.push(all.subarray(4, 4 + length));
      const rest = all.subarray(4 + length);
      this.pending = rest.length ? [rest] : [];
      this.pendingBytes = rest.length;
    }
    return packets;
  }

  private flatten(): Buffer {
    if (this.pending.length > 1) this.pending = [Buffer.concat(this.pending)];
    return this.pending[0]!;
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(Math.max(0, Math.trunc(n))));
  return b;
}

function str(s: string | Buffer): Buffer {
  const bytes = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  return Buffer.concat([u32(bytes.length), bytes]);
}

function attrs(a: Attrs): Buffer {
  let flags = 0;
  const parts: Buffer[] = [];
  if (a.size !== undefined) {
    flags |= ATTR.SIZE;
    parts.push(u64(a.size));
  }
  if (a.uid !== undefined && a.gid !== undefined) {
    flags |= ATTR.UIDGID;
    parts.push(u32(a.uid), u32(a.gid));
  }
  if (a.mode !== undefined) {
    flags |= ATTR.PERMISSIONS;
    parts.push(u32(a.mode));
  }
  if (a.atime !== undefined && a.mtime !== undefined) {
    flags |= ATTR.ACMODTIME;
    parts.push(u32(a.atime), u32(a.mtime));
  }
  return Buffer.concat([u32(flags), ...parts]);
}

function packet(type: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([u32(body.length + 1), Buffer.from([type]), body]);
}

/** The replies a server sends; every one but version answers a request id. */
export const reply = {
  version: (extensions: Record<string, string>): Buffer =>
    packet(REPLY.VERSION, u32(3), ...Object.entries(extensions).flatMap(([name, data]) => [str(name), str(data)])),
  status: (id: number, code: number, message: string): Buffer => packet(REPLY.STATUS, u32(id), u32(code), str(message), str('en')),
  handle: (id: number, handle: Buffer): Buffer => packet(REPLY.HANDLE, u32(id), str(handle)),
  data: (id: number, data: Buffer): Buffer => packet(REPLY.DATA, u32(id), str(data)),
  name: (id: number, entries: NameEntry[]): Buffer =>
    packet(REPLY.NAME, u32(id), u32(entries.length), ...entries.flatMap((e) => [str(e.filename), str(e.longname), attrs(e.attrs)])),
  attrs: (id: number, a: Attrs): Buffer => packet(REPLY.ATTRS, u32(id), attrs(a)),
  /** users-groups-by-id@openssh.com: two strings, each a run of names ('' where unknown). */
  namesById: (id: number, users: string[], groups: string[]): Buffer =>
    packet(REPLY.EXTENDED_REPLY, u32(id), str(Buffer.concat(users.map(str))), str(Buffer.concat(groups.map(str)))),
  /** An extended reply made of 64-bit values (statvfs, limits). */
  extended64: (id: number, values: number[]): Buffer => packet(REPLY.EXTENDED_REPLY, u32(id), ...values.map(u64)),
};
