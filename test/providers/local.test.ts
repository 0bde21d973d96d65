import { getEventListeners } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Broker } from '../../lib/broker/index.js';
import { HostConnectionError, ProviderError } from '../../lib/errors.js';
import { isProcessAlive } from '../../lib/identity.js';
import type { HostRecord } from '../../lib/records.js';
import { local } from '../../providers/local/definition.js';
import { intentRecord, providerConformance, testContext, testHostContext } from '../../lib/testing/index.js';

const directory = await mkdtemp(join(tmpdir(), 'hb-local-conf-'));

providerConformance({
  definition: local,
  broker: ({ providers }) => new Broker({ directory, ...(providers ? { providers } : {}) }),
  // The provider's own view: the host folder and its SSH server process.
  exists: async (record: HostRecord) => {
    const folder = join(directory, 'local-hosts', record.id);
    const pid = Number(record.data.pid);
    return existsSync(folder) && pid > 0 && isProcessAlive(pid);
  },
});

/** Pids of live processes whose command line is exactly `sleep <arg>` (the arg is unique per test). */
async function sleepers(arg: string): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    // A zombie's cmdline is empty: only running processes match.
    const cmdline = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmdline === `sleep\0${arg}\0`) out.push(Number(e));
  }
  return out;
}

async function until(check: () => Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((r) => setTimeout(r, 10));
}

let serial = 0;
/** Three distinct `sleep` arguments nobody else runs: a command, a nohup job, a setsid job. */
function sleepArgs(): [string, string, string] {
  const unique = `${process.pid}${++serial}`;
  return [`300.${unique}`, `301.${unique}`, `302.${unique}`];
}

describe('local: checkin ends everything the host started', { timeout: 60_000 }, () => {
  const cases = {
    // The whole path: the server ends them on SIGTERM, release finds any left.
    checkin: 'a running command, a nohup job and a setsid job',
    // The server alone, before release looks: what it does on SIGTERM.
    SIGTERM: 'its SSH server ends them itself on SIGTERM',
    // Release alone: the server could do nothing.
    SIGKILL: 'also when its SSH server was SIGKILLed first',
  } as const;
  for (const [kind, title] of Object.entries(cases)) {
    it(title, async () => {
      const broker = new Broker({ directory: await mkdtemp(join(tmpdir(), 'hb-local-procs-')) });
      const host = await broker.checkout({ provider: 'local' });
      const [running, nohup, setsid] = sleepArgs();
      const pending = host.execute(`sleep ${running}`).catch((e: unknown) => e);
      expect((await host.execute(`nohup sleep ${nohup} >/dev/null 2>&1 &`)).status).toBe(0);
      // Its own session, outside the command's process group.
      expect((await host.execute(`setsid sleep ${setsid} >/dev/null 2>&1 < /dev/null &`)).status).toBe(0);
      const all = async () => [...(await sleepers(running)), ...(await sleepers(nohup)), ...(await sleepers(setsid))];
      await until(async () => (await all()).length === 3);

      if (kind !== 'checkin') {
        const pid = Number(host.record.data.pid);
        process.kill(pid, kind);
        await until(async () => !isProcessAlive(pid));
        if (kind === 'SIGTERM') expect(await all()).toEqual([]);
      }
      await host.checkin();

      expect(await pending).toBeInstanceOf(HostConnectionError);
      expect(await all()).toEqual([]);
      await broker.close();
    });
  }
});

describe('local: a checkout whose SSH server fails', () => {
  it('lets go of the checkout signal', async () => {
    // An address this machine does not have: the server exits before listening.
    const t = await testContext(local, { instanceSettings: { listen: '203.0.113.1' } });
    const impl = await local.load();
    const record = intentRecord(t);
    const ctx = testHostContext(t, record);
    const error = await impl.checkout({}, { record, index: 0, count: 1 }, ctx).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as Error).message).toMatch(/exited \(1\) before listening/);
    expect(getEventListeners(ctx.signal, 'abort')).toHaveLength(0);
    await impl.release(record, ctx);
    await t.cleanup();
  });
});
