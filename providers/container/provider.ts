/**
 * The container provider's implementation (loaded lazily; dockerode is imported on first use).
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type Dockerode from 'dockerode';
import { ProviderError, TimeoutError, messageOf } from '../../lib/errors.js';
import { type DiscoveredHost, type ProviderContext, implementProvider } from '../../lib/provider.js';
import type { Connection, HostRecord, PortMap } from '../../lib/records.js';
import { toMs } from '../../lib/settings.js';
import { type ContainerArgs, type ContainerInstance, type RunArgs, type RunResult, SshArg, container as definition } from './definition.js';
import { type Engine, connectEngine, engineError, engineMessage, isEngineGone, statusOf } from './engine.js';
import { ExecTransport } from './exec-transport.js';
import { packFile } from './archive.js';
import { LABELS, type SshPlan, createOptions, leasePassed, readLabels, toArgv } from './create-request.js';
import { createHostKey, createSshdHostKey, keyPathFor, removeHostKey, waitForSshd } from './ssh.js';
import { pinnedKey } from '../../lib/known-hosts.js';

const PROVIDER = 'container';

/** Records whose checkout failed before anything was asked of the engine: release has nothing to do. */
const untouched = new Set<string>();

function engineFor(ctx: ProviderContext<ContainerInstance>): Promise<Engine> {
  return connectEngine(ctx.instanceSettings);
}

function sshPlan(args: ContainerArgs): (SshPlan & { readyTimeout?: string | number }) | undefined {
  if (args.ssh === false) return undefined;
  const ssh = args.ssh === true ? SshArg.parse({}) : args.ssh;
  return { user: ssh.user, port: ssh.port, ...(ssh.readyTimeout !== undefined ? { readyTimeout: ssh.readyTimeout } : {}) };
}

function containerName(args: ContainerArgs, record: HostRecord, instance: ContainerInstance): string {
  // The Broker already turned `name` into `name-<index>` for multi-host checkouts.
  if (args.name) return record.name.startsWith(args.name) ? record.name : args.name;
  if (instance.namePrefix) return `${instance.namePrefix}-${randomBytes(4).toString('hex')}`;
  return /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(record.name) ? record.name : `hostbroker-${randomBytes(4).toString('hex')}`;
}

function checkAborted(ctx: ProviderContext<ContainerInstance>, what: string): void {
  if (ctx.signal.aborted) throw new TimeoutError(`${what} was given up (checkout timeout or abort)`, 0, { cause: ctx.signal.reason });
}

/** Follows a pull to its end; the engine reports some failures inside the stream. */
async function pullImage(engine: Engine, image: string): Promise<void> {
  const stream = await engine.docker.pull(image);
  await new Promise<void>((resolve, reject) => {
    engine.docker.modem.followProgress(stream, (error: Error | null, output: Array<{ error?: string; errorDetail?: { message?: string } }>) => {
      const inStream = output?.find((o) => o.error || o.errorDetail);
      if (error) reject(error);
      else if (inStream) reject(new Error(inStream.errorDetail?.message ?? inStream.error));
      else resolve();
    });
  });
}

function imageError(image: string, engine: Engine, why: string, cause?: unknown): ProviderError {
  return new ProviderError(
    PROVIDER,
    `image ${image} is not on the engine at ${engine.where}${why ? ` and ${why}` : ''}. Build or pull it first ` +
      `(\`podman pull ${image}\` / \`docker pull ${image}\`; the test images come from scripts/setup-test-env.sh), or fix the name.`,
    { cause, status: 'IMAGE_NOT_FOUND' },
  );
}

function isNoSuchImage(error: unknown): boolean {
  return statusOf(error) === 404 && /image/i.test(engineMessage(error));
}

/** Creates a container, pulling its image per the pull policy. */
async function createContainer(engine: Engine, options: Dockerode.ContainerCreateOptions, pull: ContainerArgs['pull']): Promise<Dockerode.Container> {
  const image = options.Image!;
  if (pull === 'always') {
    try {
      await pullImage(engine, image);
    } catch (error) {
      if (isEngineGone(error)) throw engineError(error, engine, `pulling ${image}`);
      throw new ProviderError(
        PROVIDER,
        `cannot pull ${image} (pull: always) from the engine at ${engine.where}: ${engineMessage(error)}. Check the name and the registry, or use pull: missing.`,
        { cause: error },
      );
    }
  }
  try {
    return await engine.docker.createContainer(options);
  } catch (error) {
    if (!isNoSuchImage(error)) throw createError(error, engine, options);
    if (pull === 'never') throw imageError(image, engine, 'pull is `never`', error);
  }
  try {
    await pullImage(engine, image);
  } catch (error) {
    if (isEngineGone(error)) throw engineError(error, engine, `pulling ${image}`);
    throw imageError(image, engine, `pulling it failed (${engineMessage(error).split('\n')[0]})`, error);
  }
  try {
    return await engine.docker.createContainer(options);
  } catch (error) {
    throw createError(error, engine, options);
  }
}

function createError(error: unknown, engine: Engine, options: Dockerode.ContainerCreateOptions): ProviderError {
  const message = engineMessage(error);
  if (statusOf(error) === 409 || /already in use|already exists/i.test(message)) {
    return new ProviderError(
      PROVIDER,
      `a container named ${options.name} already exists on ${engine.where}; choose another \`name\`, or remove it (\`podman rm -f ${options.name}\`).`,
      { cause: error, status: 409 },
    );
  }
  return engineError(error, engine, `creating container ${options.name}`);
}

function startError(error: unknown, engine: Engine, name: string): ProviderError {
  const message = engineMessage(error);
  if (/address already in use|port is already allocated|bind: /i.test(message)) {
    const port = /(?:[0-9.]+|\[[0-9a-f:]+\]):(\d+)/i.exec(message)?.[0];
    return new ProviderError(
      PROVIDER,
      `cannot start ${name}: host port ${port ?? ''} is already in use (${message}). Pick a free host port in \`ports\`, or give only the container port for a random one.`.replace(
        'port  is',
        'port is',
      ),
      { cause: error, status: 'PORT_IN_USE' },
    );
  }
  if (/command that was not found|executable file not found|exec: .*no such file/i.test(message)) {
    return new ProviderError(
      PROVIDER,
      `cannot start ${name}: its command is not in the image (${message}). Fix \`command\` or \`entrypoint\`, or use an image that has it.`,
      { cause: error, status: 'COMMAND_NOT_FOUND' },
    );
  }
  return engineError(error, engine, `starting container ${name}`);
}

/** Kills then removes a container with its anonymous volumes; a container already gone is fine. */
async function removeContainer(engine: Engine, id: string): Promise<boolean> {
  const container = engine.docker.getContainer(id);
  // Kill first: a force-remove waits for the stop grace period on Podman.
  await container.kill({ signal: 'KILL' }).catch((error: unknown) => {
    if (isEngineGone(error)) throw engineError(error, engine, `removing container ${id}`);
  });
  try {
    await container.remove({ force: true, v: true });
    return true;
  } catch (error) {
    if (statusOf(error) === 404) return false;
    throw engineError(error, engine, `removing container ${id}`);
  }
}

async function logsTail(container: Dockerode.Container): Promise<string> {
  try {
    const buf = (await container.logs({ stdout: true, stderr: true, tail: 20, follow: false })) as unknown as Buffer;
    const { stdout, stderr } = demuxLog(buf);
    return (stdout + stderr).trim();
  } catch {
    return '';
  }
}

/** Splits a multiplexed log buffer (8-byte frame headers: stream, 0, 0, 0, size) into stdout and stderr. */
function demuxLog(buf: Buffer): { stdout: string; stderr: string } {
  if (buf.length < 8 || buf[1] !== 0 || buf[2] !== 0 || buf[3] !== 0 || buf[0]! > 2) return { stdout: buf.toString(), stderr: '' };
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const size = buf.readUInt32BE(i + 4);
    (buf[i] === 2 ? err : out).push(buf.subarray(i + 8, i + 8 + size));
    i += 8 + size;
  }
  return { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

/** Puts `~/.ssh/authorized_keys` for root into the container. */
async function injectRootKey(container: Dockerode.Container, publicKey: string): Promise<void> {
  const tar = await packFile('.ssh/authorized_keys', Buffer.from(`${publicKey}\n`), 0o600);
  await container.putArchive(tar, { path: '/root' });
}

/**
 * Puts the host key where sshd looks for it, before the container starts (an image whose
 * command runs `ssh-keygen -A` keeps it; the test image serves only it).
 */
async function injectSshdHostKey(container: Dockerode.Container, privateKey: string): Promise<void> {
  const tar = await packFile('ssh_host_ed25519_key', Buffer.from(privateKey), 0o600);
  try {
    await container.putArchive(tar, { path: '/etc/ssh' });
  } catch (error) {
    throw new ProviderError(
      PROVIDER,
      `cannot put the SSH host key into /etc/ssh of the container: ${engineMessage(error)}. An SSH host needs an image with OpenSSH's sshd (and its /etc/ssh).`,
      { cause: error },
    );
  }
}

/** Adds the key for another user once the container runs (its home and ids are known only then). */
async function injectUserKey(transport: ExecTransport, user: string, publicKey: string): Promise<void> {
  const { quote } = await import('../../hosts/quote.js');
  const script =
    `h=$(getent passwd ${quote(user)} 2>/dev/null | cut -d: -f6); [ -n "$h" ] || h=/home/${quote(user)}; ` +
    `mkdir -p "$h/.ssh" && printf '%s\\n' ${quote(publicKey)} >> "$h/.ssh/authorized_keys" && chmod 700 "$h/.ssh" && chmod 600 "$h/.ssh/authorized_keys" && chown -R ${quote(user)} "$h/.ssh"`;
  const proc = await transport.spawn(script);
  proc.stdin.end();
  proc.stdout.resume();
  const err: Buffer[] = [];
  proc.stderr.on('data', (c: Buffer) => err.push(c));
  const { status } = await proc.exit;
  if (status !== 0) throw new Error(`adding the SSH key for ${user} failed: ${Buffer.concat(err).toString().trim() || `exit ${status}`}`);
}

function portOf(info: Dockerode.ContainerInspectInfo, key: string): number | undefined {
  const binding = info.NetworkSettings?.Ports?.[key]?.[0];
  const port = binding ? Number(binding.HostPort) : NaN;
  return Number.isFinite(port) && port > 0 ? port : undefined;
}

function mappedPorts(info: Dockerode.ContainerInspectInfo): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, bindings] of Object.entries(info.NetworkSettings?.Ports ?? {})) {
    const port = Number(bindings?.[0]?.HostPort);
    if (port > 0) out[key] = port;
  }
  return out;
}

/**
 * Where this process reaches each published TCP port (`"8080": { host, port }`), for
 * `host.address()`; a binding on every address is reached at the publish address.
 */
export function portMapOf(info: Pick<Dockerode.ContainerInspectInfo, 'NetworkSettings'>, publishAddress: string): PortMap {
  const out: PortMap = {};
  for (const [key, bindings] of Object.entries(info.NetworkSettings?.Ports ?? {})) {
    const [port, protocol] = key.split('/');
    const binding = bindings?.[0];
    const hostPort = Number(binding?.HostPort);
    if (protocol !== 'tcp' || !(hostPort > 0)) continue;
    const ip = binding?.HostIp && binding.HostIp !== '0.0.0.0' && binding.HostIp !== '::' ? binding.HostIp : publishAddress;
    out[port!] = { host: ip, port: hostPort };
  }
  return out;
}

/** The same from a container listing (sync). */
function portMapOfListing(ports: Dockerode.Port[] | undefined, publishAddress: string): PortMap {
  const out: PortMap = {};
  for (const p of ports ?? []) {
    if (p.Type !== 'tcp' || !p.PublicPort || out[String(p.PrivatePort)]) continue;
    out[String(p.PrivatePort)] = { host: p.IP && p.IP !== '0.0.0.0' && p.IP !== '::' ? p.IP : publishAddress, port: p.PublicPort };
  }
  return out;
}

export default implementProvider(definition, {
  async checkout(args, target, ctx) {
    const instance = ctx.instanceSettings;
    const { record } = target;
    let engine: Engine;
    try {
      engine = await engineFor(ctx);
    } catch (error) {
      untouched.add(record.id);
      throw error;
    }
    const name = containerName(args, record, instance);
    const ssh = sshPlan(args);
    const key = ssh ? await createHostKey(ctx.directory, record.id) : undefined;
    const sshdKey = ssh ? await createSshdHostKey(record.id) : undefined;
    const options = createOptions({
      args,
      name,
      record,
      instance: ctx.instance,
      publishAddress: instance.publishAddress,
      ...(ssh ? { ssh: { user: ssh.user, port: ssh.port } } : {}),
      ...(key ? { publicKey: key.publicKey } : {}),
      ...(sshdKey ? { hostPublicKey: sshdKey.public } : {}),
    });
    let container: Dockerode.Container | undefined;
    const t0 = Date.now();
    const trace = (step: string): void => ctx.logger.debug(`container ${name}: ${step}`, { ms: Date.now() - t0 });
    try {
      checkAborted(ctx, `checkout of ${name}`);
      container = await createContainer(engine, options, args.pull);
      trace('created');
      if (sshdKey) await injectSshdHostKey(container, sshdKey.private);
      checkAborted(ctx, `checkout of ${name}`);
      try {
        await container.start();
      } catch (error) {
        throw startError(error, engine, name);
      }
      trace('started');
      let info: Dockerode.ContainerInspectInfo;
      try {
        info = await container.inspect();
      } catch (error) {
        throw engineError(error, engine, `inspecting container ${name}`);
      }
      if (!info.State.Running) {
        const logs = await logsTail(container);
        throw new ProviderError(
          PROVIDER,
          `container ${name} (${args.image}) exited right after it started (status ${info.State.ExitCode}${logs ? `; its output: ${logs.slice(-500)}` : ''}). ` +
            (ssh ? 'The image must run sshd in the foreground.' : "A host needs a command that keeps running: give `command`, e.g. ['sleep', 'infinity']."),
          { status: 'EXITED' },
        );
      }
      const label = `${name} (container ${info.Id.slice(0, 12)} on ${engine.where})`;
      let connection: Connection = { kind: 'provider' };
      if (ssh && key) {
        const port = portOf(info, `${ssh.port}/tcp`);
        if (!port)
          throw new ProviderError(
            PROVIDER,
            `the engine at ${engine.where} did not publish port ${ssh.port} of ${name}; check that it supports port publishing (rootless engines need a port forwarder).`,
          );
        // The key goes in while sshd starts (the archive API is cheap on a running container,
        // costly on a created one); it is in place before anyone logs in.
        const containerRef = container;
        const injected = (ssh.user === 'root' ? injectRootKey(containerRef, key.publicKey) : Promise.reject(new Error('not root'))).catch(() =>
          injectUserKey(new ExecTransport({ engine: async () => engine, container: info.Id, label, user: '0' }), ssh.user, key.publicKey),
        );
        injected.catch(() => undefined);
        const timeoutMs = toMs(ssh.readyTimeout ?? instance.sshReadyTimeout);
        await waitForSshd({
          host: instance.publishAddress,
          port,
          timeoutMs,
          signal: ctx.signal,
          label,
          check: async () => {
            const now = await container!.inspect().catch(() => undefined);
            if (!now) return 'the container is gone';
            if (!now.State.Running) {
              const logs = await logsTail(container!);
              return `the container exited (status ${now.State.ExitCode})${logs ? `; its output: ${logs.slice(-500)}` : ''}`;
            }
            return undefined;
          },
        });
        try {
          await injected;
        } catch (error) {
          throw new ProviderError(
            PROVIDER,
            `cannot authorize the SSH key for ${ssh.user} in ${name}: ${messageOf(error)}. Check that the user exists in the image.`,
            { cause: error },
          );
        }
        trace('sshd answers');
        connection = {
          kind: 'ssh',
          host: instance.publishAddress,
          port,
          username: ssh.user,
          privateKeyPath: key.privateKeyPath,
          ...(sshdKey ? pinnedKey(sshdKey.public) : {}),
        };
      }
      return {
        hostname: name,
        name,
        providerId: info.Id,
        connection,
        ports: portMapOf(info, instance.publishAddress),
        data: { containerId: info.Id, image: args.image, engine: engine.where, ports: mappedPorts(info), ...(args.user ? { user: args.user } : {}) },
      };
    } catch (error) {
      // Leave nothing behind; if the engine is gone the labels let release find it later.
      if (container) await removeContainer(engine, container.id).catch(() => undefined);
      if (key) await removeHostKey(ctx.directory, record.id).catch(() => undefined);
      if (error instanceof ProviderError || error instanceof TimeoutError) throw error;
      throw engineError(error, engine, `checking out ${name}`);
    }
  },

  async release(record, ctx) {
    if (untouched.delete(record.id)) return;
    const engine = await engineFor(ctx);
    const ids = new Set<string>();
    if (record.providerId) ids.add(record.providerId);
    // A record still provisioning may have no providerId: find its container by label.
    try {
      const found = await engine.docker.listContainers({ all: true, filters: { label: [`${LABELS.id}=${record.id}`] } });
      for (const c of found) ids.add(c.Id);
    } catch (error) {
      throw engineError(error, engine, `looking for the container of ${record.name}`);
    }
    for (const id of ids) await removeContainer(engine, id);
    await removeHostKey(ctx.directory, record.id);
  },

  async discover(ctx) {
    const engine = await engineFor(ctx);
    const instance = ctx.instanceSettings;
    let list: Dockerode.ContainerInfo[];
    try {
      list = await engine.docker.listContainers({ all: true, filters: { label: [`${LABELS.broker}=${ctx.brokerId}`] } });
    } catch (error) {
      throw engineError(error, engine, 'listing containers');
    }
    const out: DiscoveredHost[] = [];
    for (const c of list) {
      const labels = readLabels(c.Labels);
      if (labels.action || !labels.id) continue;
      if (labels.instance && labels.instance !== ctx.instance) continue;
      const name = labels.name ?? c.Names?.[0]?.replace(/^\//, '') ?? c.Id.slice(0, 12);
      let connection: Connection = { kind: 'provider' };
      if (labels.ssh) {
        const port = c.Ports?.find((p) => p.PrivatePort === labels.ssh!.port && p.PublicPort)?.PublicPort;
        if (port) {
          connection = {
            kind: 'ssh',
            host: instance.publishAddress,
            port,
            username: labels.ssh.user,
            privateKeyPath: keyPathFor(ctx.directory, labels.id),
            ...(labels.hostPublicKey ? pinnedKey(labels.hostPublicKey) : {}),
          };
        }
      }
      const host: DiscoveredHost = {
        id: labels.id,
        hostname: name,
        name,
        providerId: c.Id,
        connection,
        ports: portMapOfListing(c.Ports, instance.publishAddress),
        data: { containerId: c.Id, image: c.Image, engine: engine.where, state: c.State },
      };
      if (labels.owner) host.owner = labels.owner;
      if (labels.brokerId) host.brokerId = labels.brokerId;
      if (labels.createdAt) host.createdAt = labels.createdAt;
      if (labels.leaseExpires) host.leaseExpires = labels.leaseExpires;
      if (labels.recipe) host.recipe = labels.recipe;
      out.push(host);
    }
    return out;
  },

  // Only what discover() does not list: containers of the `run` action (no host, no record)
  // whose lease passed, i.e. whose process died before it removed them.
  async reap(ctx) {
    const engine = await engineFor(ctx);
    let list: Dockerode.ContainerInfo[];
    try {
      list = await engine.docker.listContainers({ all: true, filters: { label: [`${LABELS.broker}=${ctx.brokerId}`, LABELS.action] } });
    } catch (error) {
      throw engineError(error, engine, 'listing containers to reap');
    }
    const now = Date.now();
    const doomed = list.filter((c) => {
      const labels = readLabels(c.Labels);
      return labels.action && (!labels.instance || labels.instance === ctx.instance) && leasePassed(labels.leaseExpires, now);
    });
    const removed: string[] = [];
    const results = await Promise.allSettled(
      doomed.map(async (c) => {
        await removeContainer(engine, c.Id);
        removed.push(readLabels(c.Labels).name ?? c.Names?.[0]?.replace(/^\//, '') ?? c.Id);
      }),
    );
    const failed = results.flatMap((r) => (r.status === 'rejected' ? [messageOf(r.reason)] : []));
    if (failed.length) ctx.logger.warn(`could not reap ${failed.length} container(s)`, { errors: failed });
    return removed;
  },

  actions: {
    run: (args, ctx) => runToCompletion(args, ctx),
  },

  transport(record, ctx) {
    const user = typeof record.data?.user === 'string' ? record.data.user : typeof record.recipe.args.user === 'string' ? record.recipe.args.user : undefined;
    return new ExecTransport({
      engine: () => engineFor(ctx),
      container: record.providerId ?? record.name,
      label: `${record.name} (container ${(record.providerId ?? record.name).slice(0, 12)})`,
      ...(user ? { user } : {}),
    });
  },
});

/** The `run` action: create, attach, start, wait, collect output, remove. */
async function runToCompletion(args: RunArgs, ctx: ProviderContext<ContainerInstance>): Promise<RunResult> {
  const engine = await engineFor(ctx);
  const started = Date.now();
  const timeoutMs = toMs(args.timeout);
  const name = `hostbroker-run-${randomBytes(4).toString('hex')}`;
  const stdin = args.input !== undefined;
  const options: Dockerode.ContainerCreateOptions = {
    name,
    Image: args.image,
    Labels: {
      [LABELS.broker]: ctx.brokerId,
      [LABELS.owner]: ctx.owner,
      [LABELS.name]: name,
      [LABELS.instance]: ctx.instance,
      [LABELS.action]: 'run',
      // So that reap removes it if this process dies before it does.
      [LABELS.lease]: new Date(started + timeoutMs + 60_000).toISOString(),
    },
    Env: Object.entries(args.env ?? {}).map(([k, v]) => `${k}=${v}`),
    AttachStdin: stdin,
    OpenStdin: stdin,
    StdinOnce: stdin,
    StopTimeout: 0,
    HostConfig: {
      Binds: (args.volumes ?? []).flatMap((v) =>
        typeof v === 'string' ? (v.includes(':') ? [v] : []) : v.source ? [`${v.source}:${v.target}${v.readOnly ? ':ro' : ''}`] : [],
      ),
      ...(args.network ? { NetworkMode: args.network } : {}),
    },
  };
  if (args.command) options.Cmd = toArgv(args.command);
  if (args.entrypoint !== undefined) options.Entrypoint = typeof args.entrypoint === 'string' ? [args.entrypoint] : args.entrypoint;
  if (args.user) options.User = args.user;
  const container = await createContainer(engine, options, args.pull);
  try {
    // Registered before start so that a fast exit is not missed.
    const exited = container.wait({ condition: 'next-exit' }) as Promise<{ StatusCode: number }>;
    try {
      await container.start();
    } catch (error) {
      throw startError(error, engine, name);
    }
    if (stdin) {
      // Only stdin goes through the attach: the process's stdin stays open (StdinOnce) until this
      // attach ends it, so there is no race with the start. The empty `file` body gives the
      // request a Content-Length of 0; a chunked body makes Podman hold the upgrade.
      const stream = await new Promise<Duplex>((resolve, reject) => {
        engine.docker.modem.dial(
          {
            path: `/containers/${container.id}/attach?`,
            method: 'POST',
            isStream: true,
            hijack: true,
            openStdin: true,
            file: Buffer.alloc(0),
            statusCodes: { 101: true, 200: true, 404: 'no such container', 500: 'server error' },
            options: { _query: { stream: true, stdin: true } },
          },
          (error: unknown, result: unknown) => (error ? reject(error) : resolve(result as Duplex)),
        );
      });
      stream.on('error', () => undefined);
      stream.end(args.input);
    }
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([
      exited,
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    if (waited === 'timeout') {
      throw new TimeoutError(`\`${args.image}\` did not finish within ${timeoutMs} ms and was removed; raise \`timeout\` if it needs longer.`, timeoutMs);
    }
    // Output comes from the container's log, complete once it has exited.
    const logs = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
    const { stdout, stderr } = demuxLog(logs);
    return { status: waited.StatusCode, stdout, stderr, image: args.image, durationMs: Date.now() - started };
  } catch (error) {
    if (error instanceof ProviderError || error instanceof TimeoutError) throw error;
    throw engineError(error, engine, `running ${args.image}`);
  } finally {
    await removeContainer(engine, container.id).catch((error: unknown) =>
      ctx.logger.warn(`could not remove ${name} after the run`, { error: messageOf(error) }),
    );
  }
}
