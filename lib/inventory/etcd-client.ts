/**
 * The etcd connection of the etcd store: the lazily imported `etcd3` client made from the
 * `inventory` settings (TLS files, a user whose password comes from an environment variable),
 * and what a failing cluster becomes: an InventoryError that names the endpoints that answered.
 * @module
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Etcd3, IOptions } from 'etcd3';
import { InventoryError, SettingsError, importOptional } from '../errors.js';
import { type InventorySettings, toMs } from '../settings.js';
import { EtcdUnavailableError } from './etcd-error.js';

/** The client options for these settings. The password is read from its variable here and kept nowhere else. */
export function clientOptions(settings: InventorySettings, env: NodeJS.ProcessEnv = process.env): IOptions {
  const timeoutMs = toMs(settings.timeout);
  const options: IOptions = {
    hosts: settings.endpoints,
    dialTimeout: Math.min(timeoutMs, 3000),
    // Each call has its own deadline: a cluster without quorum must fail, not hang.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + Math.min(timeoutMs, 5000) }),
  };
  if (settings.ca_file || settings.cert_file || settings.key_file) {
    const read = (key: 'ca_file' | 'cert_file' | 'key_file'): Buffer | undefined => {
      const path = settings[key];
      if (!path) return undefined;
      try {
        return readFileSync(path);
      } catch (error) {
        throw new SettingsError(`inventory.${key}: cannot read ${path} (${(error as Error).message}); fix the path in broker_settings.yaml.`);
      }
    };
    const rootCertificate = read('ca_file');
    if (!rootCertificate) throw new SettingsError('inventory.cert_file/key_file need inventory.ca_file too (the CA that signed the etcd servers).');
    const privateKey = read('key_file');
    const certChain = read('cert_file');
    if (Boolean(privateKey) !== Boolean(certChain)) throw new SettingsError('inventory.cert_file and inventory.key_file go together: give both or neither.');
    options.credentials = { rootCertificate, ...(privateKey && certChain ? { privateKey, certChain } : {}) };
  }
  if (settings.username !== undefined) {
    if (!settings.passwordEnv)
      throw new SettingsError('inventory.username needs inventory.passwordEnv: the name of the environment variable that holds the password.');
    const password = env[settings.passwordEnv];
    if (password === undefined)
      throw new SettingsError(
        `inventory.passwordEnv: the environment variable ${settings.passwordEnv} is not set; set it to the etcd password of ${settings.username}.`,
      );
    options.auth = { username: settings.username, password };
  }
  return options;
}

/** A connected client (etcd3 is an optional peer, loaded on first use). */
export async function connect(settings: InventorySettings): Promise<Etcd3> {
  const options = clientOptions(settings);
  const { Etcd3 } = await importOptional('etcd3', 'the etcd inventory store (inventory.store: etcd)', () => import('etcd3'));
  return new Etcd3(options);
}

/**
 * Errors worth retrying: anything but a request etcd refuses as such (bad argument, too large,
 * not permitted). An unreachable member, an election, a timeout or an open circuit breaker pass.
 */
export function isTransient(error: unknown): boolean {
  const name = (error as { name?: string })?.name ?? '';
  const message = (error as { message?: string })?.message ?? '';
  if (/InvalidArgument|FailedPrecondition|OutOfRange|NotFound|AlreadyExists|NotImplemented|ClientClosed|ClientRuntime/.test(name)) return false;
  if (/too large|too many operations|duplicate key|key is not provided|invalid/i.test(message) && !/UNAVAILABLE|DEADLINE/.test(message)) return false;
  return (
    /^GRPC|BrokenCircuit|^EtcdError$/.test(name) || /leader|timed out|UNAVAILABLE|DEADLINE|ECONNREFUSED|unhealthy|circuit breaker|no connection/i.test(message)
  );
}

/** Whether the error says the credentials were refused. */
function isAuthError(error: unknown): boolean {
  const name = (error as { name?: string })?.name ?? '';
  return /Unauthenticated|AuthenticationFailed|InvalidAuthToken|PermissionDenied/.test(name);
}

/**
 * Runs `work` until it succeeds or `timeout` passes, through leader elections (~2 s). What is
 * left after that becomes an {@link EtcdUnavailableError} naming the endpoints that answered.
 */
export async function withCluster<T>(settings: InventorySettings, what: string, work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + toMs(settings.timeout);
  for (let wait = 50; ; wait = Math.min(wait * 2, 500)) {
    try {
      return await work();
    } catch (error) {
      if (InventoryError.isInstance(error) || error instanceof SettingsError) throw error;
      if (isAuthError(error)) {
        throw new InventoryError(
          `etcd at ${settings.endpoints.join(', ')} refused the credentials of ${settings.username ?? '(no user)'} while trying to ${what}: ${(error as Error).message}. Check inventory.username, the variable named by inventory.passwordEnv and the user's role on the prefix ${settings.prefix}.`,
          { cause: error },
        );
      }
      if (!isTransient(error)) {
        throw new InventoryError(
          `the etcd inventory (${settings.endpoints.join(', ')}) refused to ${what}: ${(error as Error).message}; nothing was changed.`,
          {
            cause: error,
          },
        );
      }
      if (Date.now() + wait >= deadline) throw await unavailable(settings, what, error);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/** Asks every endpoint for `/health` and says what answered. */
export async function unavailable(settings: InventorySettings, what: string, cause: unknown): Promise<EtcdUnavailableError> {
  const probes = await Promise.all(settings.endpoints.map(async (endpoint) => ({ endpoint, health: await probe(endpoint, settings) })));
  const answered = probes.filter((p) => p.health !== undefined).map((p) => p.endpoint);
  const healthy = probes.filter((p) => p.health === true).map((p) => p.endpoint);
  const silent = probes.filter((p) => p.health === undefined).map((p) => p.endpoint);
  const seen = answered.length
    ? `${answered.length} of ${settings.endpoints.length} endpoint(s) answered (${answered.join(', ')}; healthy: ${healthy.join(', ') || 'none'}), ${silent.length ? `no answer from ${silent.join(', ')}` : 'but none reported a quorum'}`
    : `none of ${settings.endpoints.join(', ')} answered`;
  return new EtcdUnavailableError(
    `the etcd inventory could not ${what} within ${toMs(settings.timeout) / 1000} s: the cluster has no quorum — ${seen}. ` +
      'Start the stopped members (a majority must run: 2 of 3) or fix the network to them, then run the operation again; hostbroker never falls back to a local file. ' +
      'A write cut off here may or may not have been applied: check with `hostbroker inventory` once the cluster answers.',
    { answered, healthy, silent },
    { cause },
  );
}

/** Whether an endpoint answers at all (`/version`), and whether it reports a quorum (`/health`). */
async function probe(endpoint: string, settings: InventorySettings): Promise<boolean | undefined> {
  const [version, health] = await Promise.all([get(endpoint, '/version', settings), get(endpoint, '/health', settings)]);
  if (version === undefined && health === undefined) return undefined;
  return health !== undefined && /"health"\s*:\s*"true"/.test(health);
}

/** The body of a GET, or undefined when the endpoint does not answer within 1.5 s. */
function get(endpoint: string, path: string, settings: InventorySettings): Promise<string | undefined> {
  return new Promise((resolve) => {
    const url = new URL(path, endpoint);
    const tls = url.protocol === 'https:';
    const read = (file: string | undefined) => (file ? readFileSync(file) : undefined);
    const files = tls ? { ca: read(settings.ca_file), cert: read(settings.cert_file), key: read(settings.key_file) } : {};
    const req = (tls ? httpsRequest : httpRequest)(url, { timeout: 1500, ...files }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += String(chunk)));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}
