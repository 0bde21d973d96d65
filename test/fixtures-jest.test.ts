/**
 * hostbroker/jest helpers. jest is not installed here, so the helpers are driven with vitest's
 * own hooks passed in (`hooks: { beforeAll, afterAll, afterEach }` — the same shapes as jest's
 * globals); the failure detection from jest-circus's state is checked against that state's shape.
 */
import { rm } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../lib/broker/index.js';
import { UserInputError } from '../lib/errors.js';
import { circusTestFailure, useGroup, useHost } from '../lib/runners/jest.js';
import { localFolders, localServers, tempBrokerDir } from './reliability/util.js';

const hooks = { beforeAll, afterAll, afterEach };
const dir = await tempBrokerDir('hb-jest-');
const broker = new Broker({ directory: dir });

afterAll(async () => {
  // Runs after the describe blocks' afterAll hooks: what they left is what the helpers left.
  const left = await broker.inventory();
  expect(left.map((r) => r.name).sort()).toEqual(['kept-0', 'kept-1']);
  expect(left.every((r) => r.kept?.reason.startsWith('test failed: the probe showed a broken service'))).toBe(true);
  expect(await localServers(dir)).toHaveLength(2);
  await broker.checkin({ all: true });
  expect(await localServers(dir)).toEqual([]);
  expect(await localFolders(dir)).toEqual([]);
  await broker.close();
  await rm(dir, { recursive: true, force: true });
});

describe('useHost', () => {
  const web = useHost({ provider: 'local', name: 'web' }, { broker, hooks });
  it('gives the host in tests, checked out once for the block', async () => {
    expect((await web.host.execute('echo $HOSTNAME')).stdout).toBe('web\n');
    expect((await broker.inventory()).map((r) => r.name)).toContain('web');
  });
});

describe('useGroup with keepOnFailure and a failed test', () => {
  const group = useGroup({ provider: 'local', name: 'kept', count: 2 }, { broker, hooks, keepOnFailure: true, testFailure: () => undefined });
  it('has both hosts', async () => {
    expect(group.hosts.map((h) => h.name)).toEqual(['kept-0', 'kept-1']);
    group.markFailed('the probe showed a broken service');
  });
});

describe('useHost without keepOnFailure, after a failure', () => {
  const host = useHost({ provider: 'local', name: 'released' }, { broker, hooks, testFailure: () => 'a test failed' });
  it('is checked in anyway', () => {
    expect(host.host.name).toBe('released');
  });
});

describe('misuse', () => {
  it('says when the value is read before beforeAll ran', () => {
    const early = useHost({ provider: 'local' }, { broker, hooks: { beforeAll: () => undefined, afterAll: () => undefined } });
    expect(() => early.host).toThrow(UserInputError);
    expect(() => early.host).toThrow(/before its beforeAll ran/);
  });
  it('says what to do without jest globals', () => {
    expect(() => useHost({ provider: 'local' }, { broker })).toThrow(/needs jest's globals `beforeAll` and `afterAll`/);
  });
});

describe('circusTestFailure', () => {
  it('reads the failing test and its first error from jest-circus state', () => {
    const sym = Symbol('JEST_STATE_SYMBOL');
    const g = globalThis as Record<symbol, unknown>;
    const root = { name: 'ROOT_DESCRIBE_BLOCK' };
    g[sym] = { currentlyRunningTest: { name: 'renders', parent: { name: 'page', parent: root }, errors: [[new Error('expected 200\nstack'), undefined]] } };
    try {
      expect(circusTestFailure()).toBe('page > renders: expected 200');
      g[sym] = { currentlyRunningTest: { name: 'ok', parent: root, errors: [] } };
      expect(circusTestFailure()).toBeUndefined();
    } finally {
      delete g[sym];
    }
    expect(circusTestFailure()).toBeUndefined();
  });
});
