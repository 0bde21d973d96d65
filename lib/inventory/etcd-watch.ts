/**
 * Watching the etcd store: one etcd watch on the prefix, started at the revision after the last
 * one the store saw (so nothing this instance knew of is missed), which the client resumes from
 * its last revision after a reconnect. When the start is unknown (nothing read yet) or etcd
 * compacted past it, the watcher gets a `reset` and re-reads.
 * @module
 */
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { Keys } from './etcd-keys.js';
import { unwrap } from './etcd-keys.js';
import { validateDeployment, validateRecord } from './operations.js';
import type { InventoryChange } from './store.js';

/** Starts a watch; returns the function that stops it. */
export function watchStore(
  open: () => Promise<Etcd3>,
  keys: Keys,
  lastRevision: () => string | undefined,
  onChange: (change: InventoryChange) => void,
): () => void {
  let stopped = false;
  let watcher: Watcher | undefined;
  const emit = (change: InventoryChange): void => {
    if (!stopped) onChange(change);
  };
  const start = async (from: string | undefined): Promise<void> => {
    const client = await open();
    let revision = from;
    if (revision === undefined) revision = (await client.kv.range({ key: Buffer.from(keys.prefix), count_only: true })).header.revision;
    if (stopped) return;
    const w = client
      .watch()
      .prefix(keys.prefix)
      .startRevision((BigInt(revision) + 1n).toString())
      .watcher();
    watcher = w;
    w.on('put', (kv) => {
      const change = changeOf(keys, kv, false);
      if (change) emit(change);
    });
    w.on('delete', (kv) => {
      const change = changeOf(keys, kv, true);
      if (change) emit(change);
    });
    w.on('error', () => {
      // Compacted past our revision, or the stream failed for good: start again from now.
      void w.cancel().catch(() => undefined);
      if (stopped) return;
      emit({ kind: 'reset' });
      void start(undefined).catch(() => emit({ kind: 'reset' }));
    });
    if (from === undefined) emit({ kind: 'reset' });
  };
  void start(lastRevision()).catch(() => emit({ kind: 'reset' }));
  return () => {
    stopped = true;
    void watcher?.cancel().catch(() => undefined);
  };
}

/** The change a put or delete of a record key stands for (reservations and workers: none; unreadable: `reset`). */
function changeOf(keys: Keys, kv: IKeyValue, deleted: boolean): InventoryChange | undefined {
  const key = kv.key.toString();
  try {
    if (key.startsWith(keys.hosts)) {
      const id = key.slice(keys.hosts.length);
      return { kind: 'host', id, record: deleted ? undefined : validateRecord(unwrap(kv).value) };
    }
    if (key.startsWith(keys.deployments)) {
      const id = key.slice(keys.deployments.length);
      return { kind: 'deployment', id, deployment: deleted ? undefined : validateDeployment(unwrap(kv).value) };
    }
  } catch {
    return { kind: 'reset' };
  }
  return undefined;
}
