/**
 * Reading a SatelliteQE Broker `broker_settings.yaml` (same file name, same `BROKER_DIRECTORY`):
 * Broker's keys that have a hostbroker equivalent are moved to it, the rest are dropped and
 * named in one warning. Our own keys are never touched, and win over Broker's. The mapping is the
 * table in docs/settings.md ("Coming from SatelliteQE Broker").
 * @module
 */

import { setOwn } from './objects.js';

type Obj = Record<string, unknown>;
/** A converted value to report as ignored (Broker value with no equivalent here). */
const IGNORE = Symbol('ignore');
/** Broker key (lower case) → our key, and how its value converts (undefined: nothing to set). */
type KeyMap = Record<string, [string, (value: unknown) => unknown]>;

const same = (v: unknown) => v;
/** Broker gives these in seconds. */
const seconds = (v: unknown) => (typeof v === 'number' ? `${v}s` : v);

const SSH: KeyMap = {
  host_username: ['username', same],
  host_ssh_port: ['port', same],
  ssh_port: ['port', same],
  host_ssh_key_filename: ['privateKeyPath', same],
  host_connection_timeout: ['connectTimeout', seconds],
};
/** Keys of Broker's `ssh` section with no equivalent (hostbroker reads SSH passwords from `passwordEnv` only). */
const SSH_IGNORED = ['host_password', 'backend', 'host_ipv6', 'host_ipv4_fallback'];
/** Top-level SSH keys of Broker before 0.6 (it moved them under `ssh`). */
const LEGACY_SSH = ['host_username', 'host_password', 'host_ssh_port', 'host_ssh_key_filename', 'ssh_backend', 'host_ipv6', 'host_ipv4_fallback'];

/** Broker's provider sections: keys mapped, keys dropped; any other key is ours and stays. */
const PROVIDERS: Record<string, { name: string; keys: KeyMap; ignored: string[] }> = {
  ansibletower: {
    name: 'tower',
    keys: {
      base_url: ['baseUrl', same],
      username: ['username', same],
      password: ['password', same],
      token: ['token', same],
      inventory: ['inventory', same],
      release_workflow: ['releaseWorkflow', same],
      extend_workflow: ['extendWorkflow', same],
      workflow_timeout: ['maxWait', seconds],
      workflow_poll_interval: ['pollInterval', seconds],
      // Broker's `store` keeps the host in its inventory, as our `keep` does; `prompt` has no equivalent.
      dangling_behavior: ['dangling', (v) => ({ checkin: 'checkin', store: 'keep' })[String(v)] ?? IGNORE],
      aap_version: ['apiPath', (v) => (v === null || v === '' ? undefined : atLeast(String(v), 2, 5) ? '/api/controller/v2/' : '/api/v2/')],
    },
    ignored: ['new_expire_time', 'results_limit', 'error_scope', 'max_resilient_wait'],
  },
  container: {
    name: 'container',
    keys: {
      // `localhost` is the local engine, which hostbroker finds by itself.
      host: ['host', (v) => (v === 'localhost' || v === null ? undefined : v)],
      host_port: ['port', (v) => (v === null || v === 'None' ? undefined : v)],
      name_prefix: ['namePrefix', same],
    },
    ignored: ['runtime', 'host_username', 'host_password', 'network', 'timeout', 'auto_map_ports', 'results_limit'],
  },
  foreman: {
    name: 'foreman',
    keys: {
      foreman_url: ['baseUrl', same],
      foreman_username: ['username', same],
      foreman_password: ['password', same],
      // false: do not verify; a path: the CA bundle; true: verify (as hostbroker always does).
      verify: ['insecure', (v) => (v === false ? true : undefined)],
    },
    ignored: ['organization', 'location', 'hostgroup', 'name_prefix'],
  },
  beaker: {
    name: 'beaker',
    keys: {
      hub_url: ['url', same],
      max_job_wait: ['reserveTimeout', seconds],
    },
    ignored: [],
  },
};

/** Broker's top-level keys with nothing to map to (reported once). */
const IGNORED_TOP = ['less_colors', 'inventory_fields', 'inventory_list_vars', 'scenario_import', 'testprovider'];

/** Broker's top-level names (for `BROKER_<section>__key` overrides, which Broker users set too). */
export const BROKER_TOP_LEVEL_KEYS: readonly string[] = [
  '_version',
  'logging',
  'thread_limit',
  'AnsibleTower',
  'TestProvider',
  'SCENARIO_IMPORT',
  ...LEGACY_SSH,
  ...IGNORED_TOP,
];

/** What {@link fromBrokerSettings} made of a settings object. */
export interface BrokerTranslation {
  settings: Obj;
  /** Broker keys dropped, as dotted paths (e.g. `AnsibleTower.new_expire_time`). */
  ignored: string[];
}

/** Moves Broker's keys in `input` to ours and lists those that have no equivalent. */
export function fromBrokerSettings(input: Obj): BrokerTranslation {
  const ignored: string[] = [];
  const out: Obj = {};
  const ssh: Obj = {};
  const legacySsh: Obj = {};
  for (const [key, value] of Object.entries(input)) {
    const lower = key.toLowerCase();
    if (lower === '_version') continue;
    if (lower === 'logging' && isObj(value)) {
      for (const [k, v] of Object.entries(value)) {
        if (k.toLowerCase() === 'console_level' && typeof v === 'string') out.logLevel ??= v.toLowerCase() === 'warning' ? 'warn' : v.toLowerCase();
        else ignored.push(`${key}.${k}`);
      }
    } else if (lower === 'thread_limit') {
      if (typeof value === 'number') out.checkout = { concurrency: value, ...(isObj(out.checkout) ? out.checkout : {}) };
    } else if (LEGACY_SSH.includes(lower)) {
      Object.assign(legacySsh, mapKeys(SSH, LEGACY_SSH, { [key]: value }, ignored, ''));
    } else if (lower === 'ssh' && isObj(value)) {
      Object.assign(ssh, mapKeys(SSH, SSH_IGNORED, value, ignored, `${key}.`));
    } else if (lower === 'nicks' && isObj(value)) {
      out.nicks = mergeInto(out.nicks, nicksOf(value, key, ignored));
    } else if (Object.hasOwn(PROVIDERS, lower) && isObj(value)) {
      const spec = PROVIDERS[lower]!;
      out[spec.name] = mergeInto(out[spec.name], providerSection(spec, value, key, ignored));
    } else if (IGNORED_TOP.includes(lower)) {
      ignored.push(key);
    } else {
      // Ours: kept as given, over anything translated into the same section before.
      setOwn(out, key, isObj(value) && isObj(out[key]) ? mergeInto(value, out[key] as Obj) : value);
    }
  }
  if (Object.keys(legacySsh).length || Object.keys(ssh).length) out.ssh = { ...legacySsh, ...ssh, ...(isObj(out.ssh) ? out.ssh : {}) };
  return { settings: out, ignored };
}

/**
 * `source` with Broker's keys mapped to ours (ours already there win) and the `dropped` ones
 * left out and named in `ignored`; every other key is ours and stays as it is.
 */
function mapKeys(map: KeyMap, dropped: readonly string[], source: Obj, ignored: string[], prefix: string): Obj {
  const ours: Obj = {};
  const mapped: Obj = {};
  for (const [key, value] of Object.entries(source)) {
    const lower = key.toLowerCase();
    // Own keys only: a key named `__proto__` or `constructor` is the user's, not a mapping.
    const entry = Object.hasOwn(map, lower) ? map[lower] : undefined;
    // Broker's example leaves placeholders empty (`hub_url:`, `network: null`): nothing to carry over or lose.
    if ((entry || dropped.includes(lower)) && value === null) continue;
    if (entry) {
      const converted = entry[1](value);
      if (converted === IGNORE) ignored.push(`${prefix}${key}`);
      else if (converted !== undefined) mapped[entry[0]] = converted;
    } else if (dropped.includes(lower)) ignored.push(`${prefix}${key}`);
    else setOwn(ours, key, value);
  }
  return { ...mapped, ...ours };
}

function providerSection(spec: (typeof PROVIDERS)[string], section: Obj, name: string, ignored: string[]): Obj {
  const convert = (values: Obj, prefix: string): Obj => {
    const out = mapKeys(spec.keys, spec.ignored, values, ignored, prefix);
    // A port of `localhost` is the local engine's: hostbroker finds that one by itself.
    if (spec.name === 'container' && out.host === undefined && !('port' in values)) delete out.port;
    const verify = Object.entries(values).find(([k]) => k.toLowerCase() === 'verify')?.[1];
    if (spec.name === 'foreman' && typeof verify === 'string' && verify !== '') out.ca_file ??= verify;
    return out;
  };
  const { instances, ...shared } = section;
  const out = convert(shared, `${name}.`);
  // Broker before 0.6 listed instances as a list of one-key mappings.
  const list = Array.isArray(instances) ? Object.assign({}, ...instances.filter(isObj)) : instances;
  if (isObj(list)) {
    out.instances = Object.fromEntries(
      Object.entries(list).map(([inst, values]) => [inst, isObj(values) ? convert(values, `${name}.instances.${inst}.`) : values]),
    );
  }
  return out;
}

/** Broker nicks name no provider: it follows from their arguments. */
function nicksOf(nicks: Obj, name: string, ignored: string[]): Obj {
  const out: Obj = {};
  for (const [nick, value] of Object.entries(nicks)) {
    if (!isObj(value) || typeof value.provider === 'string') {
      setOwn(out, nick, value);
      continue;
    }
    const { container_host, job_xml, ...rest } = value;
    const translated =
      'workflow' in value || 'job_template' in value
        ? { provider: 'tower', ...value }
        : container_host !== undefined
          ? { provider: 'container', image: container_host, ...rest }
          : 'hostgroup' in value
            ? { provider: 'foreman', ...value }
            : job_xml !== undefined
              ? { provider: 'beaker', jobXmlFile: job_xml, ...rest }
              : undefined;
    if (translated) setOwn(out, nick, translated);
    else ignored.push(`${name}.${nick}`);
  }
  return out;
}

function atLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

/** Deep merge where `existing` wins: our own keys over translated Broker ones. */
function mergeInto(existing: unknown, added: Obj): Obj {
  if (!isObj(existing)) return added;
  const out: Obj = { ...added };
  for (const [k, v] of Object.entries(existing)) setOwn(out, k, isObj(out[k]) && isObj(v) ? mergeInto(v, out[k] as Obj) : v);
  return out;
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
