/**
 * Every prefab on a real `local` host (the suite is in test/helpers/prefab-suite.ts; container
 * hosts run it in test/config/container.test.ts), and Pip3 with a wheel built on the host.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pip3, SitePlan } from '../../lib/index.js';
import type { Host } from '../../hosts/host.js';
import { localHost, snapshot, type BrokerFixture } from '../helpers/config-host.js';
import { describeApt, describePrefabs, prefabCases } from '../helpers/prefab-suite.js';

let fx: BrokerFixture & { host: Host };
let user = '';
let group = '';

beforeAll(async () => {
  fx = await localHost();
  [user = '', group = ''] = (await fx.host.execute('id -un; id -gn')).stdout.trim().split('\n');
});

afterAll(async () => {
  await fx?.close();
});

describePrefabs(
  'local',
  () => fx.host,
  () => prefabCases(user, group),
);
describeApt('local', () => fx.host);

describe('Pip3 on a local host (a wheel built in the test, installed into a virtualenv; no network)', () => {
  it('installs once, finds a hand uninstall, and uninstalls in clean', async () => {
    const host = fx.host;
    const setup = await host.execute(
      [
        'python3 -m venv ~/venv',
        `python3 - <<'PY'
import os, zipfile
home = os.environ['HOME']
with zipfile.ZipFile(os.path.join(home, 'hb_dummy-0.1-py3-none-any.whl'), 'w') as z:
    z.writestr('hb_dummy/__init__.py', 'VALUE = 42\\n')
    z.writestr('hb_dummy-0.1.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: hb-dummy\\nVersion: 0.1\\n')
    z.writestr('hb_dummy-0.1.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: hostbroker-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')
    z.writestr('hb_dummy-0.1.dist-info/RECORD', 'hb_dummy/__init__.py,,\\nhb_dummy-0.1.dist-info/METADATA,,\\nhb_dummy-0.1.dist-info/WHEEL,,\\nhb_dummy-0.1.dist-info/RECORD,,\\n')
PY`,
      ].join(' && '),
    );
    expect(setup.status, setup.stderr).toBe(0);
    const plan = new SitePlan([
      { whiteprint: Pip3, config: { pip: '~/venv/bin/pip', packages: ['~/hb_dummy-0.1-py3-none-any.whl'], installArgs: ['--no-index'] } },
    ]);
    const imports = async (): Promise<number> => (await host.execute('~/venv/bin/python -c "import hb_dummy; assert hb_dummy.VALUE == 42"')).status;

    const first = await host.apply(plan, 'install');
    expect(first.ok, first.toString()).toBe(true);
    expect(first.steps[0]!.changes).toEqual(['installed hb-dummy']);
    expect(await imports()).toBe(0);
    const before = await snapshot(host, '~/venv/lib');
    expect((await host.apply(plan, 'install')).steps[0]!.status).toBe('unchanged');
    expect(await snapshot(host, '~/venv/lib')).toBe(before);

    await host.execute('~/venv/bin/pip uninstall -y -q hb-dummy');
    expect((await host.validate(plan, 'install')).steps[0]!.drift).toEqual(['python package not installed: hb-dummy']);
    expect((await host.apply(plan, 'install')).steps[0]!.status).toBe('changed');

    expect((await host.apply(plan, 'clean')).steps[0]!.changes).toEqual(['uninstalled hb-dummy']);
    expect(await imports()).not.toBe(0);
    expect((await host.validate(plan, 'clean')).ok).toBe(true);
  }, 300_000);
});
