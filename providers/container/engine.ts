/**
 * Finding and talking to the container engine: discovery (first place that answers), and
 * turning engine failures into errors that say what to do.
 * @module
 */
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { ProviderError, importOptional, messageOf } from '../../lib/errors.js';
import type { ContainerInstance } from './definition.js';

const PROVIDER = 'container';

/** A connected engine. */
export interface Engine {
  docker: Dockerode;
  /** Where it was found, for messages: `unix:///run/podman/podman.sock`. */
  where: string;
}

/** One place an engine may answer. */
export interface EngineCandidate {
  where: string;
  /** Why this place is tried: settings, DOCKER_HOST, Podman (root), ... */
  source: string;
  options: Dockerode.DockerOptions;
}

/** The places to try, in order: settings, DOCKER_HOST, Podman sockets, the Docker socket. */
export function engineCandidates(instance: Partial<ContainerInstance>, env: NodeJS.ProcessEnv = process.env): EngineCandidate[] {
  if (instance.socketPath) {
    return [{ where: `unix://${instance.socketPath}`, source: 'settings (socketPath)', options: { socketPath: instance.socketPath } }];
  }
  if (instance.host) {
    const protocol = instance.protocol ?? (instance.tlsCertPath ? 'https' : 'http');
    const port = instance.port ?? (protocol === 'https' ? 2376 : 2375);
    return [
      {
        where: `${protocol}://${instance.host}:${port}`,
        source: 'settings (host)',
        options: { host: instance.host, port, protocol, ...tlsFiles(instance.tlsCaPath, instance.tlsCertPath, instance.tlsKeyPath) },
      },
    ];
  }
  const out: EngineCandidate[] = [];
  const dockerHost = env.DOCKER_HOST;
  if (dockerHost) out.push(fromDockerHost(dockerHost, env));
  const sockets: Array<[string, string]> = [];
  if (env.XDG_RUNTIME_DIR) sockets.push([join(env.XDG_RUNTIME_DIR, 'podman', 'podman.sock'), 'Podman (user)']);
  sockets.push(['/run/podman/podman.sock', 'Podman (root)'], ['/var/run/docker.sock', 'Docker']);
  for (const [socketPath, source] of sockets) {
    if (!out.some((c) => c.options.socketPath === socketPath)) out.push({ where: `unix://${socketPath}`, source, options: { socketPath } });
  }
  return out;
}

function fromDockerHost(value: string, env: NodeJS.ProcessEnv): EngineCandidate {
  const source = 'DOCKER_HOST';
  if (value.startsWith('unix://')) return { where: value, source, options: { socketPath: value.slice('unix://'.length) } };
  let url: URL;
  try {
    url = new URL(value.replace(/^tcp:/, 'http:'));
  } catch {
    return { where: value, source, options: { socketPath: value } };
  }
  const tls = env.DOCKER_TLS_VERIFY === '1' || url.protocol === 'https:';
  const certs = env.DOCKER_CERT_PATH;
  return {
    where: value,
    source,
    options: {
      host: url.hostname,
      port: Number(url.port || (tls ? 2376 : 2375)),
      protocol: tls ? 'https' : 'http',
      ...(tls && certs ? tlsFiles(join(certs, 'ca.pem'), join(certs, 'cert.pem'), join(certs, 'key.pem')) : {}),
    },
  };
}

function tlsFiles(ca?: string, cert?: string, key?: string): Pick<Dockerode.DockerOptions, 'ca' | 'cert' | 'key'> {
  const read = (path: string | undefined, what: string): Buffer | undefined => {
    if (!path) return undefined;
    try {
      return readFileSync(path);
    } catch (error) {
      throw new ProviderError(
        PROVIDER,
        `cannot read the engine's TLS ${what} file ${path}: ${messageOf(error)}; fix the path in settings or DOCKER_CERT_PATH.`,
      );
    }
  };
  const out: Pick<Dockerode.DockerOptions, 'ca' | 'cert' | 'key'> = {};
  const c = read(ca, 'CA');
  const ce = read(cert, 'certificate');
  const k = read(key, 'key');
  if (c) out.ca = c;
  if (ce) out.cert = ce;
  if (k) out.key = k;
  return out;
}

/** How to get an engine running, for the "no engine" error. */
export const START_ENGINE_HINT =
  'Start one: as root, `scripts/setup-test-env.sh` (installs Podman and serves /run/podman/podman.sock) or ' +
  '`podman system service --time=0 unix:///run/podman/podman.sock &`; as a user, `systemctl --user start podman.socket`; ' +
  'or start Docker (`systemctl start docker`). Or point hostbroker at an engine with DOCKER_HOST or ' +
  '`container.instances.<name>.socketPath` / `host` in broker_settings.yaml.';

async function loadDockerode(): Promise<typeof Dockerode> {
  const mod = await importOptional('dockerode', 'the container provider', () => import('dockerode'));
  return (mod as { default: typeof Dockerode }).default;
}

async function probe(candidate: EngineCandidate, timeoutMs: number): Promise<Engine> {
  const socket = candidate.options.socketPath;
  if (socket) {
    try {
      const s = await stat(socket);
      if (!s.isSocket()) throw new Error('not a socket');
    } catch (error) {
      throw new Error((error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no socket there' : messageOf(error));
    }
  }
  const Docker = await loadDockerode();
  const docker = new Docker(candidate.options);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      docker.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
  return { docker, where: candidate.where };
}

const cache = new Map<string, Promise<Engine>>();

/**
 * The engine for an instance's settings: the first candidate that answers a ping. Cached per
 * settings; a failed discovery is not cached, so a later call tries again.
 */
export function connectEngine(instance: Partial<ContainerInstance>, env: NodeJS.ProcessEnv = process.env): Promise<Engine> {
  const key = JSON.stringify([
    instance.socketPath,
    instance.host,
    instance.port,
    instance.protocol,
    instance.tlsCertPath,
    env.DOCKER_HOST,
    env.XDG_RUNTIME_DIR,
  ]);
  let found = cache.get(key);
  if (!found) {
    found = discover(instance, env);
    cache.set(key, found);
    found.catch(() => cache.delete(key));
  }
  return found;
}

/** Forgets cached engines (tests; after the engine moved). */
export function forgetEngines(): void {
  cache.clear();
}

async function discover(instance: Partial<ContainerInstance>, env: NodeJS.ProcessEnv): Promise<Engine> {
  const candidates = engineCandidates(instance, env);
  const tried: string[] = [];
  for (const candidate of candidates) {
    try {
      return await probe(candidate, 3000);
    } catch (error) {
      tried.push(`${candidate.where} [${candidate.source}]: ${messageOf(error)}`);
    }
  }
  throw new ProviderError(PROVIDER, `no container engine answered. Tried:\n  - ${tried.join('\n  - ')}\n${START_ENGINE_HINT}`, { status: 'NO_ENGINE' });
}

/** Error codes that mean the engine itself is unreachable. */
const GONE = new Set(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH']);

/** Whether an error says the engine went away (not that a request was refused). */
export function isEngineGone(error: unknown): boolean {
  const e = error as { code?: string; message?: string } | undefined;
  return !!e && ((e.code !== undefined && GONE.has(e.code)) || /socket hang up/i.test(e.message ?? ''));
}

/** HTTP status of an engine error, if it has one. */
export function statusOf(error: unknown): number | undefined {
  const s = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

/** The engine's own message of an error (dockerode puts the JSON body in `json`). */
export function engineMessage(error: unknown): string {
  const e = error as { json?: { message?: string; cause?: string } | null; reason?: string; message?: string };
  const fromJson = e?.json && typeof e.json === 'object' ? (e.json.message ?? e.json.cause) : undefined;
  return (fromJson ?? messageOf(error)).trim();
}

/** Wraps an engine failure while `doing` something into a ProviderError that says what to do. */
export function engineError(error: unknown, engine: Pick<Engine, 'where'>, doing: string): ProviderError {
  if (error instanceof ProviderError) return error;
  if (isEngineGone(error)) {
    return new ProviderError(
      PROVIDER,
      `the container engine at ${engine.where} stopped answering while ${doing} (${(error as { code?: string }).code ?? messageOf(error)}). ` +
        'Start it again; then `checkin({ all: true })` or reap removes anything this left behind.',
      { cause: error, status: 'ENGINE_GONE' },
    );
  }
  const status = statusOf(error);
  return new ProviderError(PROVIDER, `${doing} failed on ${engine.where}: ${engineMessage(error)}`, {
    cause: error,
    ...(status !== undefined ? { status, retryable: status >= 500 && status !== 501 } : {}),
  });
}
