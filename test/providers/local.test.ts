import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker } from '../../lib/broker.js';
import { isProcessAlive } from '../../lib/identity.js';
import type { HostRecord } from '../../lib/records.js';
import { providerConformance } from '../conformance.js';

const directory = await mkdtemp(join(tmpdir(), 'hb-local-conf-'));

providerConformance({
  provider: 'local',
  broker: ({ providers }) => new Broker({ directory, ...(providers ? { providers } : {}) }),
  // The provider's own view: the host folder and its SSH server process.
  exists: async (record: HostRecord) => {
    const folder = join(directory, 'local-hosts', record.id);
    const pid = Number(record.data.pid);
    return existsSync(folder) && pid > 0 && isProcessAlive(pid);
  },
});
