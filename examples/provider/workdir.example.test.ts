/**
 * The example provider's tests, as its own repository would have them: the shared conformance
 * suite, and its own behaviour called directly with a context like the Broker's.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Broker, ProviderError } from 'hostbroker';
import { intentRecord, providerConformance, testContext, testHostContext } from 'hostbroker/testing';
import { workdir } from './definition.js';

const root = mkdtempSync(join(tmpdir(), 'hb-workdir-hosts-'));
const directory = mkdtempSync(join(tmpdir(), 'hb-workdir-broker-'));

providerConformance({
  definition: workdir,
  broker: ({ providers }) => new Broker({ directory, providers, settings: { logLevel: 'silent', workdir: { root } } }),
  // Asked of the provider's own system (the file system), never of the inventory.
  exists: async (record) => existsSync(join(root, record.id)),
});

describe('workdir checkout', () => {
  const made = testContext(workdir, { instanceSettings: { root } });
  afterAll(async () => (await made).cleanup());

  it('creates the files it is given, and refuses a path outside the directory', async () => {
    const t = await made;
    const impl = await workdir.load();
    const record = intentRecord(t);
    const host = await impl.checkout({ files: { 'conf/app.ini': 'debug = 1\n' } }, { record, index: 0, count: 1 }, testHostContext(t, record));
    expect(await readFile(join(String(host.data?.folder), 'conf/app.ini'), 'utf8')).toBe('debug = 1\n');
    await impl.release(record, testHostContext(t, record));

    const escaping = intentRecord(t);
    const error = await impl
      .checkout({ files: { '../elsewhere': 'x' } }, { record: escaping, index: 0, count: 1 }, testHostContext(t, escaping))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).message).toMatch(/leaves the host directory/);
    await impl.release(escaping, testHostContext(t, escaping));
    expect(existsSync(join(root, escaping.id))).toBe(false);
  });
});
