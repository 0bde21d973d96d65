/**
 * Reading and replacing the inventory file: validated on read, never overwritten when corrupted
 * (a copy is kept and the error says how to recover), replaced atomically (temp file, fsync,
 * rename) with mode 0600 and the previous version kept as `.bak`.
 * @module
 */
import { readFileSync } from 'node:fs';
import { copyFile, link, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeTemp } from '../atomic-file.js';
import { InventoryError } from '../errors.js';
import { InventoryFile } from '../records.js';
import { formatIssues } from '../settings.js';

const EMPTY: InventoryFile = { version: 1, generation: 0, hosts: [], deployments: [] };

/** The inventory as read, and the exact text it was read from (undefined: no file yet). */
export interface ReadInventory {
  data: InventoryFile;
  text: string | undefined;
}

/** The file's text now, or undefined when there is none. */
export async function currentText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InventoryError(`cannot read the inventory ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Reads and validates the inventory (no lock needed: writes are atomic renames). */
export async function readInventory(path: string): Promise<ReadInventory> {
  const text = await currentText(path);
  if (text === undefined) return { data: structuredClone(EMPTY), text };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return corrupt(path, `it is not valid JSON (${(error as Error).message})`);
  }
  const result = InventoryFile.safeParse(json);
  if (!result.success) return corrupt(path, `it does not match the inventory format (${formatIssues(result.error)})`);
  return { data: result.data, text };
}

/** The inventory read at once, or undefined when it is missing or unreadable (for watchers). */
export function readInventorySync(path: string): InventoryFile | undefined {
  try {
    const result = InventoryFile.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    return result.success ? result.data : undefined;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? structuredClone(EMPTY) : undefined;
  }
}

async function corrupt(path: string, why: string): Promise<never> {
  const backup = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  // Keep a copy of the broken file before anyone edits it.
  await copyFile(path, backup).catch(() => undefined);
  throw new InventoryError(
    `the inventory ${path} is corrupted: ${why}. It was not changed; a copy is kept at ${backup}` +
      `, and the last good version (if any) at ${path}.bak. Repair the file or restore the .bak copy, then run \`hostbroker inventory --sync\` to find hosts again.`,
  );
}

/**
 * Replaces the file with `text`, atomically, keeping the old one as `.bak`. `stillMine` is asked
 * last, right before the rename: when it says no, nothing is replaced and this returns false.
 */
export async function replaceInventory(path: string, text: string, stillMine: () => Promise<boolean>): Promise<boolean> {
  const tmp = await writeTemp(path, text);
  try {
    // The old file survives as .bak through a hard link: no data copied.
    await rm(`${path}.bak`, { force: true });
    await link(path, `${path}.bak`).catch((error: NodeJS.ErrnoException) => {
      // EEXIST: a writer that lost its lock is racing us for the .bak; either copy is a good one.
      if (error.code !== 'ENOENT' && error.code !== 'EEXIST') throw error;
    });
    if (!(await stillMine())) {
      await rm(tmp, { force: true });
      return false;
    }
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw new InventoryError(`cannot write the inventory ${path}: ${(error as Error).message}`, { cause: error });
  }
  const dir = await open(dirname(path), 'r').catch(() => undefined);
  await dir?.sync().catch(() => undefined);
  await dir?.close();
  return true;
}
