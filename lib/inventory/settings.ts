/**
 * The `inventory` settings section: which store holds the records, and how to reach an etcd
 * cluster for a team's shared one.
 * @module
 */
import { lazySchema, z } from '../zod.js';
import { Duration } from '../duration.js';

/**
 * Where the inventory lives: the file in the broker directory (default), or an etcd cluster
 * shared by a team (docs/team.md). `BROKER_INVENTORY__ENDPOINTS` may be a comma-separated list.
 */
export const InventorySettings = lazySchema(() =>
  z.preprocess(
    keysIgnoringCase,
    z.strictObject({
      store: z.enum(['file', 'etcd']).default('file'),
      endpoints: z
        .preprocess(
          (v) =>
            typeof v === 'string'
              ? v
                  .split(',')
                  .map((e) => e.trim())
                  .filter(Boolean)
              : v,
          z.array(z.string().regex(/^https?:\/\/[^/\s]+\/?$/, 'an etcd client URL such as http://127.0.0.1:2379')).min(1),
        )
        .default(['http://127.0.0.1:2379']),
      /** Keys live under it, so several teams can share a cluster. */
      prefix: z.string().min(1).regex(/\/$/, 'end the prefix with `/`, e.g. hostbroker/').default('hostbroker/'),
      /** Seconds a dead worker's liveness lasts. */
      workerTtl: z.number().int().min(2).max(3600).default(10),
      /** How long one operation may wait for the cluster (a leader election takes ~2 s). */
      timeout: Duration.default('10s'),
      username: z.string().optional(),
      /** Environment variable holding the password (never the password itself). */
      passwordEnv: z.string().optional(),
      ca_file: z.string().optional(),
      cert_file: z.string().optional(),
      key_file: z.string().optional(),
    }),
  ),
);
export type InventorySettings = z.output<typeof InventorySettings>;

const INVENTORY_KEYS = ['store', 'endpoints', 'prefix', 'workerTtl', 'timeout', 'username', 'passwordEnv', 'ca_file', 'cert_file', 'key_file'];

/** `BROKER_INVENTORY__STORE` and `inventory.store` alike: the section's keys in any case. */
function keysIgnoringCase(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const known = new Map(INVENTORY_KEYS.map((k) => [k.toLowerCase(), k]));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [known.get(k.toLowerCase()) ?? k, v]));
}
