/**
 * Settings: `broker_settings.yaml` in the broker directory, `.env` beside it (the real
 * environment wins), and overrides `BROKER_<section>__<key>=value` (double underscore nests).
 * Everything is validated with zod; a bad value names its key and says why.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseYamlStrict as parseYaml } from './yaml.js';
import { lazySchema, z } from './zod.js';
import { SettingsError } from './errors.js';
import { setOwn } from './objects.js';
import { BROKER_TOP_LEVEL_KEYS, fromBrokerSettings } from './settings-broker.js';
import { JumpHost } from './records.js';
import { Duration } from './duration.js';
import { InventorySettings } from './inventory/settings.js';

export { Duration, toMs } from './duration.js';
export { InventorySettings } from './inventory/settings.js';

/** SSH defaults for hosts that do not say otherwise. */
export const SshSettings = lazySchema(() =>
  z.object({
    username: z.string().default('root'),
    port: z.number().int().min(1).max(65535).default(22),
    /** Private key used when a host names none. */
    privateKeyPath: z.string().optional(),
    /** Environment variable holding a password, when password login is used. */
    passwordEnv: z.string().optional(),
    /** Limit for one connection attempt. */
    connectTimeout: Duration.default('10s'),
    /** How long to keep retrying until SSH answers (a fresh VM boots). */
    readyTimeout: Duration.default('5m'),
    keepaliveInterval: Duration.default('15s'),
    keepaliveCountMax: z.number().int().min(1).default(3),
    /** Channels opened at once on one connection (OpenSSH allows 10, frees them late). */
    channelsPerConnection: z.number().int().min(1).max(64).default(5),
    /** Connections opened to one host at most. */
    maxConnections: z.number().int().min(1).max(64).default(8),
    /**
     * Connections a big file transfer (32 MiB and up) is split over. `auto`: one when the host is
     * this machine (loopback or one of its addresses), where more only compete for its CPUs; else 4.
     */
    bulkStreams: z.union([z.literal('auto'), z.number().int().min(1).max(64)]).default('auto'),
    /** `record`: remember the host key on first use, refuse a changed one. `ignore`: never check. */
    hostKeyPolicy: z.enum(['record', 'ignore']).default('record'),
    /** Jump hosts for SSH hosts that name none (OpenSSH `ProxyJump`), first to last. */
    jump: z.array(JumpHost).optional(),
    /** Log in with the ssh-agent at `$SSH_AUTH_SOCK` (also tried when a host names no key or password). */
    agent: z.boolean().optional(),
    /** Environment variable holding the passphrase of encrypted keys that name none. */
    passphraseEnv: z.string().optional(),
    /**
     * Read the OpenSSH client config (`true`: `~/.ssh/config`, or this path) for each SSH host:
     * HostName, Port, User, IdentityFile and ProxyJump fill what hostbroker was not told.
     */
    sshConfig: z.union([z.boolean(), z.string().min(1)]).optional(),
  }),
);
export type SshSettings = z.output<typeof SshSettings>;

/** Defaults for checkouts. */
export const CheckoutSettings = lazySchema(() =>
  z.object({
    /** Hosts provisioned at once. */
    concurrency: z.number().int().min(1).max(256).default(16),
    /** Limit for one host's checkout. */
    timeout: Duration.default('30m'),
    /** Lease given to hosts when a request names none (providers that support leases). */
    lease: Duration.optional(),
    onPartialFailure: z.enum(['abort', 'keep']).default('abort'),
    /** Bundles applied to every checkout (see docs/configuration.md). */
    bundles: z.array(z.string()).default([]),
    /** Test fixtures (`hostbroker/vitest`, `hostbroker/jest`) keep a failed test's hosts instead of checking them in. */
    keepOnFailure: z.boolean().default(false),
    /** Hosts in the warm-reuse pool (`checkout({ reuse: true })`) idle longer than this are released. */
    reuseIdle: Duration.default('30m'),
  }),
);
export type CheckoutSettings = z.output<typeof CheckoutSettings>;

/** A nick: a named checkout request. */
export const Nick = lazySchema(() => z.object({ provider: z.string() }).catchall(z.unknown()));
export type Nick = z.output<typeof Nick>;

/** One provider's section: shared keys, plus named instances (one may be `default: true`). */
export const ProviderSection = lazySchema(() =>
  z
    .object({
      instances: z.record(z.string(), z.record(z.string(), z.unknown())).optional(),
    })
    .catchall(z.unknown()),
);
export type ProviderSection = z.output<typeof ProviderSection>;

const KNOWN_KEYS = ['logLevel', 'ssh', 'checkout', 'nicks', 'bundles', 'provisioning', 'owner', 'providers', 'inventory'] as const;

/** The whole settings object. Provider sections sit under `providers` or at top level by name. */
export const SettingsSchema = lazySchema(() =>
  z.object({
    logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug', 'trace']).default('warn'),
    /** Owner recorded on hosts; defaults to the OS user. */
    owner: z.string().optional(),
    ssh: SshSettings.default(SshSettings.parse({})),
    checkout: CheckoutSettings.default(CheckoutSettings.parse({})),
    nicks: z.record(z.string(), Nick).default({}),
    /** Named bundles (keys, files, scripts); validated where they are applied. */
    bundles: z.record(z.string(), z.unknown()).default({}),
    /** Topology provisioning config (images, flavors, networks per provider). */
    provisioning: z.record(z.string(), z.unknown()).default({}),
    /** Provider sections by provider name. */
    providers: z.record(z.string(), ProviderSection).default({}),
    /** Where the inventory lives (file or etcd). */
    inventory: InventorySettings.default(InventorySettings.parse({})),
  }),
);
export type Settings = z.output<typeof SettingsSchema>;
/** Settings as a user writes them. */
export type SettingsInput = z.input<typeof SettingsSchema> & Record<string, unknown>;

/** File name of the settings file in the broker directory. */
export const SETTINGS_FILE = 'broker_settings.yaml';

/**
 * Loads and validates settings for a directory. `options.providerNames` are the known providers:
 * top-level keys with these names are provider sections.
 */
export function loadSettings(
  directory: string,
  options: { overrides?: Record<string, unknown>; env?: NodeJS.ProcessEnv; providerNames?: readonly string[] } = {},
): Settings {
  const env = options.env ?? process.env;
  const envFile = join(directory, '.env');
  if (existsSync(envFile)) {
    // Fills process.env with keys the real environment lacks; real environment wins.
    const parsed = (createRequire(import.meta.url)('dotenv') as typeof import('dotenv')).parse(readFileSync(envFile));
    for (const [k, v] of Object.entries(parsed)) if (env[k] === undefined) env[k] = v;
  }
  const file = join(directory, SETTINGS_FILE);
  let raw: unknown = {};
  if (existsSync(file)) {
    try {
      raw = parseYaml(readFileSync(file, 'utf8')) ?? {};
    } catch (error) {
      throw new SettingsError(`${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}; fix the file and try again.`, { cause: error });
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      throw new SettingsError(`${file} must hold a mapping of settings at the top level, not ${Array.isArray(raw) ? 'a list' : typeof raw}.`);
    }
  }
  let merged = deepMerge(raw as Record<string, unknown>, options.overrides ?? {});
  merged = deepMerge(merged, envOverrides(env, options.providerNames ?? []));
  const broker = fromBrokerSettings(merged);
  const settings = parseSettings(broker.settings, options.providerNames ?? [], existsSync(file) ? file : 'settings');
  if (broker.ignored.length) warnings.set(settings, [brokerWarning(existsSync(file) ? file : 'settings', broker.ignored)]);
  return settings;
}

/** A warning about loaded settings, for the Broker to log once its logger exists. */
export interface SettingsWarning {
  message: string;
  fields: Record<string, unknown>;
}

const warnings = new WeakMap<Settings, SettingsWarning[]>();
const warned = new Set<string>();

/**
 * Warnings of {@link loadSettings} about these settings, each given once per process (a test
 * suite making a Broker per test hears about a Broker settings file once).
 */
export function takeSettingsWarnings(settings: Settings): SettingsWarning[] {
  const list = (warnings.get(settings) ?? []).filter((w) => {
    const key = JSON.stringify(w);
    if (warned.has(key)) return false;
    warned.add(key);
    return true;
  });
  warnings.delete(settings);
  return list;
}

function brokerWarning(source: string, ignored: string[]): SettingsWarning {
  return {
    // The list goes in the fields only: the text logger prints them after the message.
    message: `${source} holds ${ignored.length} SatelliteQE Broker setting(s) hostbroker has no use for; they are ignored (listed in \`ignored\`). The keys that do map were read (see "Coming from SatelliteQE Broker" in docs/settings.md).`,
    fields: { source, ignored },
  };
}

/** Validates a settings object, moving top-level provider sections under `providers`. */
export function parseSettings(input: Record<string, unknown>, providerNames: readonly string[], source = 'settings'): Settings {
  const normalized: Record<string, unknown> = {};
  const providers: Record<string, unknown> = { ...((input.providers as Record<string, unknown>) ?? {}) };
  const names = new Map(providerNames.map((n) => [n.toLowerCase(), n]));
  for (const [key, value] of Object.entries(input)) {
    if ((KNOWN_KEYS as readonly string[]).includes(key)) {
      if (key !== 'providers') setOwn(normalized, key, value);
      continue;
    }
    const provider = names.get(key.toLowerCase());
    if (provider) {
      // `local:` with nothing under it (null) or a scalar would crash the merge below.
      if (!isPlain(value))
        throw new SettingsError(
          `${source}: \`${key}\` must be a mapping of ${provider} settings (or be left out), not ${value === null ? 'empty' : Array.isArray(value) ? 'a list' : typeof value}.`,
        );
      providers[provider] = deepMerge((providers[provider] as Record<string, unknown>) ?? {}, value as Record<string, unknown>);
      continue;
    }
    throw new SettingsError(
      `${source}: unknown key \`${key}\`. Known keys: ${[...KNOWN_KEYS, ...providerNames].join(', ')}. Check the spelling, or register the provider it belongs to.`,
    );
  }
  normalized.providers = providers;
  const result = SettingsSchema.safeParse(normalized);
  if (!result.success) throw new SettingsError(`${source}: ${formatIssues(result.error)}`);
  for (const [name, section] of Object.entries(result.data.providers)) {
    const defaults = Object.entries(section.instances ?? {}).filter(([, v]) => v.default === true);
    if (defaults.length > 1) {
      throw new SettingsError(
        `${source}: provider \`${name}\` has ${defaults.length} instances marked default (${defaults.map(([k]) => k).join(', ')}); mark exactly one.`,
      );
    }
  }
  return result.data;
}

/** Turns zod issues into "key.path: why" lines. */
export function formatIssues(error: z.ZodError, prefix = ''): string {
  return error.issues
    .map((i) => {
      const path = [prefix, ...i.path.map(String)].filter(Boolean).join('.');
      return `${path || '(top level)'}: ${i.message}`;
    })
    .join('; ');
}

/** Resolves a provider instance: shared section keys overlaid by the chosen instance's keys. */
export function resolveInstance(settings: Settings, provider: string, instance?: string): { name: string; values: Record<string, unknown> } {
  const section = settings.providers[provider] ?? {};
  const { instances, ...shared } = section;
  const all = instances ?? {};
  if (instance !== undefined && !(instance === 'default' && Object.keys(all).length === 0)) {
    const chosen = all[instance];
    if (!chosen) {
      const known = Object.keys(all);
      throw new SettingsError(
        `provider \`${provider}\` has no instance \`${instance}\`; ${known.length ? `known instances: ${known.join(', ')}` : `add it under ${provider}.instances in ${SETTINGS_FILE}`}.`,
      );
    }
    return { name: instance, values: withoutDefaultFlag({ ...shared, ...chosen }) };
  }
  const entries = Object.entries(all);
  const picked = entries.find(([, v]) => v.default === true) ?? (entries.length === 1 ? entries[0] : undefined);
  if (!picked && entries.length > 1) {
    throw new SettingsError(
      `provider \`${provider}\` has several instances (${entries.map(([k]) => k).join(', ')}) and none is \`default: true\`; mark one or pass \`instance\`.`,
    );
  }
  return picked ? { name: picked[0], values: withoutDefaultFlag({ ...shared, ...picked[1] }) } : { name: 'default', values: shared };
}

function withoutDefaultFlag(values: Record<string, unknown>): Record<string, unknown> {
  const { default: _omit, ...rest } = values;
  return rest;
}

/** `BROKER_<section>__<key>=value` → nested object. Values are parsed as YAML scalars. */
export function envOverrides(env: NodeJS.ProcessEnv, providerNames: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const topLevel = new Map([...KNOWN_KEYS, ...providerNames, ...BROKER_TOP_LEVEL_KEYS].map((k) => [k.toLowerCase(), k]));
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('BROKER_') || value === undefined || name === 'BROKER_DIRECTORY') continue;
    const parts = name.slice('BROKER_'.length).split('__');
    const head = topLevel.get(parts[0]!.toLowerCase());
    if (!head) {
      if (parts.length > 1) {
        throw new SettingsError(`environment variable ${name}: \`${parts[0]}\` is not a settings section; known: ${[...topLevel.values()].join(', ')}.`);
      }
      continue; // BROKER_SOMETHING without nesting may belong to someone else.
    }
    let parsed: unknown = value;
    try {
      parsed = parseYaml(value);
    } catch {
      parsed = value;
    }
    let node = out;
    const path = [head, ...parts.slice(1)];
    path.forEach((segment, i) => {
      if (i === path.length - 1) node[segment] = parsed;
      else node = (node[segment] ??= {}) as Record<string, unknown>;
    });
  }
  return out;
}

/** Recursive merge of plain objects; `b` wins. */
export function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    setOwn(out, k, isPlain(prev) && isPlain(v) ? deepMerge(prev, v) : v);
  }
  return out;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}
