/**
 * Tar archives for the engine's archive API (file read/write without a shell in the image).
 * tar-stream comes with dockerode (through tar-fs), so it is present whenever dockerode is.
 * @module
 */
import { importOptional } from '../../lib/errors.js';

type TarStream = typeof import('tar-stream');

async function loadTar(): Promise<TarStream> {
  const mod = await importOptional('tar-stream', 'file transfer with the container provider', () => import('tar-stream'));
  return ((mod as { default?: TarStream }).default ?? mod) as TarStream;
}

/** A tar archive holding one file `name` (mode defaults to 0644). */
export async function packFile(name: string, data: Buffer, mode = 0o644, owner: { uid: number; gid: number } = { uid: 0, gid: 0 }): Promise<Buffer> {
  const tar = await loadTar();
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (c: Buffer) => chunks.push(c));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
  pack.entry({ name, size: data.length, mode, mtime: new Date(), type: 'file', uid: owner.uid, gid: owner.gid }, data);
  pack.finalize();
  return done;
}

/** The first entry of a tar stream. */
export interface TarEntry {
  type: string;
  name: string;
  data: Buffer;
  linkname?: string;
}

/** Reads the first entry of a tar stream (its content, for a file). */
export async function firstEntry(stream: NodeJS.ReadableStream): Promise<TarEntry | undefined> {
  const tar = await loadTar();
  const extract = tar.extract();
  return new Promise<TarEntry | undefined>((resolve, reject) => {
    let first: TarEntry | undefined;
    extract.on('entry', (headers, body, next) => {
      if (first) {
        body.resume();
        body.on('end', next);
        return;
      }
      const parts: Buffer[] = [];
      body.on('data', (c: Buffer) => parts.push(c));
      body.on('end', () => {
        first = { type: headers.type ?? 'file', name: headers.name, data: Buffer.concat(parts), ...(headers.linkname ? { linkname: headers.linkname } : {}) };
        next();
      });
      body.on('error', reject);
    });
    extract.on('finish', () => resolve(first));
    extract.on('error', reject);
    stream.on('error', reject);
    stream.pipe(extract);
  });
}
