/**
 * Watching the inventory file. Writers replace it by rename, so the directory is watched, not the
 * file; bursts of writes are coalesced, and what changed is found by comparing the records before
 * and after (per record, or `reset` when a version could not be read).
 * @module
 */
import { type FSWatcher, mkdirSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { InventoryFile } from '../records.js';
import { readInventorySync } from './file-io.js';
import type { InventoryChange, InventorySnapshot } from './store.js';

/** How long a burst of writes is let settle before the file is read again, in ms. */
const SETTLE_MS = 20;

/** Per-record changes from one snapshot to the next: added or changed (the new record) and removed (undefined). */
export function diffSnapshots(before: InventorySnapshot, after: InventorySnapshot): InventoryChange[] {
  const changes: InventoryChange[] = [];
  for (const [id, record] of changed(before.hosts, after.hosts)) changes.push({ kind: 'host', id, record });
  for (const [id, deployment] of changed(before.deployments, after.deployments)) changes.push({ kind: 'deployment', id, deployment });
  return changes;
}

function changed<T extends { id: string }>(before: readonly T[], after: readonly T[]): Array<[string, T | undefined]> {
  const old = new Map(before.map((r) => [r.id, JSON.stringify(r)]));
  const now = new Set(after.map((r) => r.id));
  return [
    ...after.filter((r) => old.get(r.id) !== JSON.stringify(r)).map((r): [string, T] => [r.id, r]),
    ...[...old.keys()].filter((id) => !now.has(id)).map((id): [string, undefined] => [id, undefined]),
  ];
}

/**
 * Calls `onChange` for every change to the file at `path` from now on, until the returned
 * function is called. Never keeps the process alive. An exception thrown by `onChange` is dropped
 * so that it cannot stop the watch.
 */
export function watchInventoryFile(path: string, onChange: (change: InventoryChange) => void): () => void {
  const directory = dirname(path);
  mkdirSync(directory, { recursive: true });
  let previous: InventoryFile | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const emit = (change: InventoryChange): void => {
    if (stopped) return;
    try {
      onChange(change);
    } catch {
      // A watcher's own failure is its business; the watch goes on.
    }
  };
  const look = (): void => {
    timer = undefined;
    if (stopped) return;
    const next = readInventorySync(path);
    if (!next || !previous) emit({ kind: 'reset' });
    else for (const change of diffSnapshots(previous, next)) emit(change);
    previous = next;
  };
  let watcher: FSWatcher | undefined = watch(directory, { persistent: false }, (_event, file) => {
    if (file !== null && file !== basename(path)) return;
    timer ??= setTimeout(look, SETTLE_MS).unref();
  });
  watcher.on('error', () => {
    // The directory went away (or the watch broke): say so once and stop.
    emit({ kind: 'reset' });
    stop();
  });
  // Read after the watch exists, so a write in between is seen as a change.
  previous = readInventorySync(path);
  const stop = (): void => {
    stopped = true;
    if (timer) clearTimeout(timer);
    watcher?.close();
    watcher = undefined;
  };
  return stop;
}
