import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { createLogger } from '../../lib/logger.js';

// The example scenarios are documentation: each must run as it is, on local hosts, and leave nothing.
const EXAMPLES = resolve('examples/scenarios');
const files = (await readdir(EXAMPLES)).filter((f) => f.endsWith('.yaml')).sort();

describe('examples/scenarios', { timeout: 120_000 }, () => {
  let dir: string;
  let broker: Broker;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hb-scenario-examples-'));
    broker = new Broker({ directory: dir, logger: createLogger('silent') });
  });
  afterAll(async () => {
    await broker.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('has examples', () => {
    expect(files).toEqual(['hello-local.yaml', 'retry-and-recover.yaml', 'topology.yaml']);
  });

  it.each(files)('%s runs to its end and leaves no host behind', async (file) => {
    const result = await broker.scenario(join(EXAMPLES, file), { vars: { REPORT: join(dir, 'report.yaml') }, stdout: process.stderr });
    expect(result.exitCode).toBe(0);
    expect(result.steps.filter((s) => s.status === 'failed').map((s) => s.name)).toEqual(file === 'retry-and-recover.yaml' ? ['Broken'] : []);
    expect(await broker.inventory()).toEqual([]);
    expect(await broker.deployments()).toEqual([]);
  });
});
