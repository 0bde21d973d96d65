/**
 * Team mode's pure parts: which records are orphans of dead workers, and the `inventory` settings
 * as a user writes them (YAML or `BROKER_INVENTORY__*` in any case), refusing what is wrong.
 */
import { describe, expect, it } from 'vitest';
import { workerOrphans } from '../../lib/broker/reap-rule.js';
import { clientOptions } from '../../lib/inventory/etcd-client.js';
import { loadSettings, InventorySettings } from '../../lib/settings.js';
import { sampleRecord } from '../../lib/testing/store-suite.js';

describe('worker orphans', () => {
  it('are the records whose worker is not live; kept and unstamped records never are', () => {
    const records = [
      sampleRecord('live', { worker: 'w1' }),
      sampleRecord('dead', { worker: 'w2', state: 'ready' }),
      sampleRecord('dead-provisioning', { worker: 'w2' }),
      sampleRecord('dead-but-kept', { worker: 'w2', kept: { reason: 'look', at: '2026-01-01T00:00:00.000Z' } }),
      sampleRecord('nobody', {}),
    ];
    expect(workerOrphans(records, new Set(['w1'])).map((r) => r.id)).toEqual(['dead', 'dead-provisioning']);
    expect(
      workerOrphans(
        records,
        new Map([
          ['w1', {}],
          ['w2', {}],
        ]),
      ),
    ).toEqual([]);
  });
});

describe('inventory settings', () => {
  it('default to the file store; BROKER_INVENTORY__* set them in any case, endpoints as a comma list', () => {
    const dir = '/nonexistent-hb-settings';
    expect(loadSettings(dir, { env: {} }).inventory).toMatchObject({ store: 'file', prefix: 'hostbroker/', workerTtl: 10 });
    const env = {
      BROKER_INVENTORY__STORE: 'etcd',
      BROKER_INVENTORY__ENDPOINTS: 'http://10.0.0.1:2379, http://10.0.0.2:2379',
      BROKER_INVENTORY__workerTtl: '4',
      BROKER_INVENTORY__PASSWORDENV: 'ETCD_PW',
    };
    expect(loadSettings(dir, { env }).inventory).toMatchObject({
      store: 'etcd',
      endpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'],
      workerTtl: 4,
      passwordEnv: 'ETCD_PW',
    });
  });

  it('refuse unknown keys, a bad store, a bad endpoint and a prefix without a slash, naming the key', () => {
    const dir = '/nonexistent-hb-settings';
    const bad = (inventory: Record<string, unknown>) => {
      try {
        loadSettings(dir, { env: {}, overrides: { inventory } });
      } catch (error) {
        return error as { code: string; message: string };
      }
      throw new Error('accepted');
    };
    expect(bad({ stoer: 'etcd' })).toMatchObject({ code: 'SETTINGS', message: expect.stringMatching(/inventory.*stoer/) });
    expect(bad({ store: 'redis' }).message).toMatch(/inventory\.store/);
    expect(bad({ endpoints: ['127.0.0.1:2379'] }).message).toMatch(/inventory\.endpoints\.0.*http:\/\/127\.0\.0\.1:2379/);
    expect(bad({ prefix: 'team' }).message).toMatch(/inventory\.prefix/);
  });

  it('take the password from its variable for the client, and refuse a user without one', () => {
    const settings = InventorySettings.parse({ store: 'etcd', username: 'ci', passwordEnv: 'ETCD_PW' });
    expect(clientOptions(settings, { ETCD_PW: 's3cret' }).auth).toMatchObject({ username: 'ci', password: 's3cret' });
    expect(() => clientOptions(settings, {})).toThrow(expect.objectContaining({ code: 'SETTINGS', message: expect.stringContaining('ETCD_PW') }));
    expect(() => clientOptions(InventorySettings.parse({ username: 'ci' }), {})).toThrow(expect.objectContaining({ code: 'SETTINGS' }));
    expect(() => clientOptions(InventorySettings.parse({ cert_file: '/x.pem' }), {})).toThrow(
      expect.objectContaining({ code: 'SETTINGS', message: expect.stringContaining('ca_file') }),
    );
  });
});
