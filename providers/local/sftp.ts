/**
 * The SFTP subsystem of a `local` host, on the raw subsystem channel: SFTP version 3 with the
 * OpenSSH extensions its clients use (see sftp-requests.ts for what each request does). Like
 * OpenSSH's sftp-server it answers requests in order, one at a time, and ends the way sshd ends
 * it: after the client's EOF, exit status 0, EOF and close (what scp, `sftp -b` and Ansible wait
 * for); on a stream it cannot read, exit status 1 with the reason on stderr.
 * @module
 */
import type ssh2 from 'ssh2';
import { BadMessage, Framer, REQUEST, Reader, reply } from './sftp-wire.js';
import { EXTENSIONS, MAX_PACKET, SftpRequests, type SftpOptions } from './sftp-requests.js';

export type { SftpOptions } from './sftp-requests.js';

/** Requests read ahead of the one being served; past this the channel's window stops the client. */
const MAX_QUEUED = 256;

/** Serves one SFTP session on a subsystem channel until the client's EOF or a closed channel. */
export function serveSftp(channel: ssh2.ServerChannel, options: SftpOptions): void {
  const requests = new SftpRequests(options);
  const framer = new Framer(MAX_PACKET);
  const queue: Buffer[] = [];
  let initialised = false;
  let busy = false;
  let eof = false;
  let done = false;

  const finish = (status: number, why?: string): void => {
    if (done) return;
    done = true;
    queue.length = 0;
    if (why) channel.stderr.write(`sftp: ${why}\n`);
    void requests.closeAll().finally(() => {
      try {
        channel.exit(status);
        channel.end();
      } catch {
        // the client went away first
      }
    });
  };

  const drained = (): Promise<void> =>
    new Promise((resolve) => {
      const go = (): void => {
        channel.off('drain', go);
        channel.off('close', go);
        resolve();
      };
      channel.on('drain', go);
      channel.on('close', go);
    });

  /** The reply to one packet; throws BadMessage when there is no request id to answer. */
  const serve = async (packet: Buffer): Promise<Buffer> => {
    const r = new Reader(packet);
    const type = r.u8();
    if (!initialised) {
      if (type !== REQUEST.INIT) throw new BadMessage(`request type ${type} before INIT`);
      initialised = true;
      r.u32(); // the client's version; this server speaks 3, as OpenSSH does
      return reply.version(EXTENSIONS);
    }
    if (type === REQUEST.INIT) throw new BadMessage('a second INIT');
    return requests.answer(type, r.u32(), r);
  };

  const pump = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      while (queue.length > 0 && !done) {
        const out = await serve(queue.shift()!);
        if (queue.length < MAX_QUEUED / 2 && channel.isPaused()) channel.resume();
        if (!done && !channel.write(out)) await drained();
      }
    } catch (error) {
      finish(1, (error as Error).message);
    } finally {
      busy = false;
    }
    if (eof && queue.length === 0) finish(0);
  };

  channel.on('data', (chunk: Buffer) => {
    if (done) return;
    try {
      queue.push(...framer.push(chunk));
    } catch (error) {
      return finish(1, (error as Error).message);
    }
    if (queue.length >= MAX_QUEUED) channel.pause();
    void pump();
  });
  channel.on('end', () => {
    eof = true;
    if (!busy) finish(0);
  });
  channel.on('close', () => {
    done = true;
    queue.length = 0;
    void requests.closeAll();
  });
  channel.on('error', () => undefined);
}
