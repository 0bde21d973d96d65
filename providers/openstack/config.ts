/**
 * Where OpenStack credentials come from, in the order the OpenStack tools use: a cloud in
 * `clouds.yaml` (named by the settings' `cloud` or `$OS_CLOUD`, with `secure.yaml` beside it),
 * else the `OS_*` environment variables; the settings instance's own `auth` keys go on top.
 * TLS: the instance's `ca_file` / `insecure`, else the cloud's `cacert` / `verify`, else
 * `OS_CACERT` / `OS_INSECURE`.
 * Secrets found here are registered so they are scrubbed from every log and error message.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { lazySchema, z } from '../../lib/zod.js';
import { SettingsError } from '../../lib/errors.js';
import type { TlsOptions } from '../../lib/http-dispatcher.js';
import { tlsOptionsOf } from '../../lib/http-settings.js';
import { registerSecret } from '../../lib/secrets.js';
import { formatIssues } from '../../lib/settings.js';
import { OpenStackAuth, type OpenStackInstance } from './definition.js';

/** What the resolver may look at; tests pass their own. */
export interface ConfigSources {
  env: NodeJS.ProcessEnv;
  /** Directory searched first for `clouds.yaml`. */
  cwd: string;
  home: string;
}

/** Credentials and endpoint choice, ready for Keystone. Holds secrets: never log or record it. */
export interface ResolvedCloud {
  /** Keystone v3 URL, ending in `/v3`. */
  authUrl: string;
  method: 'password' | 'application_credential';
  auth: OpenStackAuth;
  regionName: string | undefined;
  interface: 'public' | 'internal' | 'admin';
  /** Where the credentials came from, for messages (no secrets). */
  source: string;
  /** CA file to trust, or no verification. */
  tls: TlsOptions;
}

const CloudEntry = lazySchema(() =>
  z
    .object({
      auth: OpenStackAuth.partial().passthrough().optional(),
      auth_type: z.string().optional(),
      region_name: z.string().optional(),
      interface: z.string().optional(),
      identity_api_version: z.union([z.string(), z.number()]).optional(),
      /** CA bundle to trust (a path). */
      cacert: z.string().min(1).optional(),
      /** `false`: do not verify certificates. */
      verify: z.boolean().optional(),
    })
    .passthrough(),
);
const CloudsFile = lazySchema(() => z.object({ clouds: z.record(z.string(), CloudEntry).default({}) }).passthrough());
type CloudEntry = z.output<typeof CloudEntry>;

/** `OS_*` variable → clouds.yaml auth key. */
const ENV_AUTH: Record<string, keyof OpenStackAuth> = {
  OS_AUTH_URL: 'auth_url',
  OS_USERNAME: 'username',
  OS_USER_ID: 'user_id',
  OS_PASSWORD: 'password',
  OS_PROJECT_NAME: 'project_name',
  OS_TENANT_NAME: 'project_name',
  OS_PROJECT_ID: 'project_id',
  OS_TENANT_ID: 'project_id',
  OS_USER_DOMAIN_NAME: 'user_domain_name',
  OS_USER_DOMAIN_ID: 'user_domain_id',
  OS_PROJECT_DOMAIN_NAME: 'project_domain_name',
  OS_PROJECT_DOMAIN_ID: 'project_domain_id',
  OS_APPLICATION_CREDENTIAL_ID: 'application_credential_id',
  OS_APPLICATION_CREDENTIAL_NAME: 'application_credential_name',
  OS_APPLICATION_CREDENTIAL_SECRET: 'application_credential_secret',
};

/** The `clouds.yaml` files looked at, in order (the first that exists is used, as the OpenStack tools do). */
export function cloudsFileCandidates(sources: ConfigSources, explicit?: string): string[] {
  if (explicit) return [resolve(sources.cwd, explicit)];
  const list: string[] = [];
  if (sources.env.OS_CLIENT_CONFIG_FILE) list.push(resolve(sources.cwd, sources.env.OS_CLIENT_CONFIG_FILE));
  list.push(join(sources.cwd, 'clouds.yaml'));
  list.push(join(sources.env.XDG_CONFIG_HOME || join(sources.home, '.config'), 'openstack', 'clouds.yaml'));
  list.push('/etc/openstack/clouds.yaml');
  return list;
}

/**
 * Resolves the credentials of one settings instance. Throws a SettingsError that says where it
 * looked. `directory`: the broker directory, against which the instance's relative `ca_file` is resolved.
 */
export function resolveCloud(instance: OpenStackInstance, sources: ConfigSources, directory: string = sources.cwd): ResolvedCloud {
  const env = sources.env;
  const cloudName = instance.cloud ?? env.OS_CLOUD;
  let base: CloudEntry = {};
  let source: string;
  if (cloudName) {
    const candidates = cloudsFileCandidates(sources, instance.cloudsFile);
    const file = candidates.find((f) => existsSync(f));
    if (!file) {
      throw new SettingsError(
        `openstack: cloud \`${cloudName}\` was asked for (${instance.cloud ? 'settings `cloud`' : '$OS_CLOUD'}) but no clouds.yaml was found; looked at ${candidates.join(', ')}. Create one there, or set \`cloudsFile\` in the openstack settings.`,
      );
    }
    const clouds = readClouds(file);
    const entry = clouds[cloudName];
    if (!entry) {
      throw new SettingsError(
        `openstack: ${file} has no cloud \`${cloudName}\`; it has ${Object.keys(clouds).join(', ') || 'none'}. Fix the name in the settings or $OS_CLOUD.`,
      );
    }
    const secure = join(dirname(file), 'secure.yaml');
    const secureFile = env.OS_CLIENT_SECURE_FILE ? resolve(sources.cwd, env.OS_CLIENT_SECURE_FILE) : secure;
    const secrets = existsSync(secureFile) ? readClouds(secureFile)[cloudName] : undefined;
    base = mergeEntry(entry, secrets ?? {});
    source = `cloud \`${cloudName}\` in ${file}`;
  } else if (env.OS_AUTH_URL || env.OS_APPLICATION_CREDENTIAL_ID) {
    const auth: Record<string, string> = {};
    for (const [name, key] of Object.entries(ENV_AUTH)) {
      const value = env[name];
      if (value !== undefined && value !== '' && auth[key] === undefined) auth[key] = value;
    }
    base = {
      auth: auth as OpenStackAuth,
      auth_type: env.OS_AUTH_TYPE,
      region_name: env.OS_REGION_NAME,
      interface: env.OS_INTERFACE ?? env.OS_ENDPOINT_TYPE,
    };
    source = 'the OS_* environment variables';
  } else {
    source = 'the openstack settings';
  }

  const auth: OpenStackAuth = { ...pickAuth(base.auth), ...stripUndefined(instance.auth ?? {}) };
  if (instance.passwordEnv) auth.password = env[instance.passwordEnv] ?? auth.password;
  if (instance.applicationCredentialSecretEnv)
    auth.application_credential_secret = env[instance.applicationCredentialSecretEnv] ?? auth.application_credential_secret;
  registerSecret(auth.password);
  registerSecret(auth.application_credential_secret);

  const authType = instance.auth_type ?? base.auth_type;
  const method = authType
    ? methodOf(authType, source)
    : auth.application_credential_id || auth.application_credential_name
      ? 'application_credential'
      : 'password';
  if (!auth.auth_url) {
    throw new SettingsError(
      `openstack: no Keystone URL (auth_url) in ${source}. Set OS_CLOUD and a clouds.yaml, the OS_* variables (source your openrc), or openstack.auth.auth_url in the settings.`,
    );
  }
  requireCredentials(method, auth, source, instance);
  return {
    authUrl: keystoneV3(auth.auth_url, source),
    method,
    auth,
    regionName: instance.region_name ?? base.region_name,
    interface: normalizeInterface(instance.interface ?? base.interface, source),
    source,
    tls: cloudTls(instance, base, sources, directory),
  };
}

/** The instance's own TLS keys win; then clouds.yaml (paths as the OpenStack tools take them: from the working directory); then OS_CACERT / OS_INSECURE. */
function cloudTls(instance: OpenStackInstance, base: CloudEntry, sources: ConfigSources, directory: string): TlsOptions {
  const own = tlsOptionsOf(instance, directory);
  const cacert = base.cacert ?? sources.env.OS_CACERT;
  const caFile = own.caFile ?? (cacert ? tlsOptionsOf({ ca_file: cacert }, sources.cwd).caFile : undefined);
  const envInsecure = /^(1|true|yes)$/i.test(sources.env.OS_INSECURE ?? '');
  const insecure = instance.insecure ?? (base.verify === undefined ? envInsecure : !base.verify);
  return { ...(caFile ? { caFile } : {}), ...(insecure ? { insecure } : {}) };
}

function readClouds(file: string): Record<string, CloudEntry> {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8')) ?? {};
  } catch (error) {
    throw new SettingsError(`openstack: ${file} is not valid YAML (${(error as Error).message.split('\n')[0]}); fix the file.`, { cause: error });
  }
  const parsed = CloudsFile.safeParse(raw);
  if (!parsed.success) throw new SettingsError(`openstack: ${file}: ${formatIssues(parsed.error)}`);
  return parsed.data.clouds;
}

function mergeEntry(a: CloudEntry, b: CloudEntry): CloudEntry {
  return { ...a, ...b, auth: { ...(a.auth ?? {}), ...(b.auth ?? {}) } };
}

function pickAuth(auth: Record<string, unknown> | undefined): OpenStackAuth {
  const out: Record<string, string> = {};
  for (const key of Object.keys(OpenStackAuth.shape)) {
    const v = auth?.[key];
    if (typeof v === 'string' || typeof v === 'number') out[key] = String(v);
  }
  return out as OpenStackAuth;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function methodOf(authType: string, source: string): ResolvedCloud['method'] {
  if (authType === 'password' || authType === 'v3password') return 'password';
  if (authType === 'v3applicationcredential') return 'application_credential';
  throw new SettingsError(`openstack: auth_type \`${authType}\` in ${source} is not supported; use password, v3password or v3applicationcredential.`);
}

function requireCredentials(method: ResolvedCloud['method'], auth: OpenStackAuth, source: string, instance: OpenStackInstance): void {
  const missing: string[] = [];
  if (method === 'password') {
    if (!auth.username && !auth.user_id) missing.push('username (or user_id)');
    if (!auth.password) missing.push(instance.passwordEnv ? `password (the variable ${instance.passwordEnv} is not set)` : 'password');
  } else {
    if (!auth.application_credential_id && !(auth.application_credential_name && (auth.username || auth.user_id))) {
      missing.push('application_credential_id (or application_credential_name with username)');
    }
    if (!auth.application_credential_secret) {
      missing.push(
        instance.applicationCredentialSecretEnv
          ? `application_credential_secret (the variable ${instance.applicationCredentialSecretEnv} is not set)`
          : 'application_credential_secret',
      );
    }
  }
  if (missing.length) {
    throw new SettingsError(
      `openstack: ${source} lacks ${missing.join(' and ')} for ${method} authentication; add it there (secrets may go in secure.yaml, an OS_* variable, or a variable named by passwordEnv).`,
    );
  }
}

/** Keystone URLs are often given without a version: assume v3, refuse v2. */
function keystoneV3(url: string, source: string): string {
  const trimmed = url.replace(/\/+$/, '');
  if (/\/v2(\.0)?$/.test(trimmed)) {
    throw new SettingsError(`openstack: auth_url ${trimmed} in ${source} is Keystone v2, which is not supported; use the v3 URL (usually the same with /v3).`);
  }
  return /\/v3$/.test(trimmed) ? trimmed : `${trimmed}/v3`;
}

function normalizeInterface(value: string | undefined, source: string): ResolvedCloud['interface'] {
  const v = (value ?? 'public').replace(/URL$/, '');
  if (v === 'public' || v === 'internal' || v === 'admin') return v;
  throw new SettingsError(`openstack: interface \`${value}\` in ${source} is not one of public, internal, admin.`);
}

/** The real process's sources. */
export function processSources(): ConfigSources {
  return { env: process.env, cwd: process.cwd(), home: homedir() };
}
