import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Broker } from '../lib/broker/index.js';
import { createLogger } from '../lib/logger.js';

describe('keep and unkeep', () => {
  it('keep marks the record with its reason and lets the host go; unkeep clears the mark and checkin --all then releases it', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'hb-keep-'));
    try {
      await using broker = new Broker({ directory, logger: createLogger('silent') });
      const host = await broker.checkout({ provider: 'local' });
      const [kept] = await broker.keep(host, 'test failed: look at it');
      expect(kept).toMatchObject({ id: host.id, kept: { reason: 'test failed: look at it' } });
      // Disposing the Broker would not check a kept host in; a second Broker sees the mark.
      await using other = new Broker({ directory, logger: createLogger('silent') });
      expect((await other.find(host.id))?.kept?.reason).toBe('test failed: look at it');

      const [cleared] = await other.unkeep(host.id);
      expect(cleared!.id).toBe(host.id);
      expect(cleared!.kept).toBeUndefined();
      // Unkeeping what is not kept changes nothing and reports nothing.
      expect(await other.unkeep(host.id)).toEqual([]);
      await other.checkin(host.id);
      expect(await other.inventory()).toEqual([]);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});
