/**
 * The first half of an atomic file replacement, shared by the inventory and known_hosts: the new
 * content in a temporary file beside the target, mode 0600, fsynced, ready to be renamed over it.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';

/** Writes `text` to a fresh temporary file next to `path` (mode 0600, fsynced) and returns its name. */
export async function writeTemp(path: string, text: string): Promise<string> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  } finally {
    await handle.close();
  }
  return tmp;
}

/** Replaces `path` with `text` atomically (temporary file, fsync, rename), mode 0600. */
export async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = await writeTemp(path, text);
  try {
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}
