/**
 * The `container` provider: hosts are containers on a Docker Engine API (Docker, or Podman's
 * compatible service), reached through the engine's exec API or, for images that run sshd, over
 * SSH. See `docs/providers/container.md`.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';
import { defineProvider, type ImplementationFor, pickImage } from '../../lib/provider.js';
import { HostName } from '../../lib/records.js';
import { Duration } from '../../lib/settings.js';

/** A command: a string runs through `/bin/sh -c`, an array runs as is. */
export const CommandArg = lazySchema(() => z.union([z.string().min(1), z.array(z.string()).min(1)]));
export type CommandArg = z.output<typeof CommandArg>;

/**
 * A published port. A number or `"8080"`/`"8080/udp"` publishes that container port on a random
 * host port; `"9000:8080"` or `"127.0.0.1:9000:8080"` fixes the host side. Host ports bind to
 * 127.0.0.1 unless a host IP is given.
 */
export const PortArg = lazySchema(() =>
  z.union([
    z.number().int().min(1).max(65535),
    z
      .string()
      .regex(
        /^(?:(?:[0-9.]+|\[[0-9a-fA-F:]+\]):)?(?:\d{1,5}:)?\d{1,5}(?:\/(?:tcp|udp|sctp))?$/,
        'use "8080", "8080/udp", "9000:8080" or "127.0.0.1:9000:8080"',
      ),
    z.strictObject({
      container: z.number().int().min(1).max(65535),
      host: z.number().int().min(0).max(65535).optional(),
      hostIp: z.string().default('127.0.0.1'),
      protocol: z.enum(['tcp', 'udp', 'sctp']).default('tcp'),
    }),
  ]),
);
export type PortArg = z.output<typeof PortArg>;

/** A volume: `"/host/dir:/in/container[:ro]"` (bind), `"name:/in/container"` (named volume), `"/in/container"` (anonymous). */
export const VolumeArg = lazySchema(() =>
  z.union([
    z.string().min(1),
    z.strictObject({
      /** Host path (absolute) or volume name; omit for an anonymous volume. */
      source: z.string().optional(),
      target: z.string().startsWith('/', 'the target must be an absolute path in the container'),
      readOnly: z.boolean().default(false),
    }),
  ]),
);
export type VolumeArg = z.output<typeof VolumeArg>;

/** How to reach the container over SSH (its image must run sshd). */
export const SshArg = lazySchema(() =>
  z.strictObject({
    /** User to log in as; its authorized_keys gets a key made for this host. */
    user: z.string().default('root'),
    /** Port sshd listens on inside the container. */
    port: z.number().int().min(1).max(65535).default(22),
    /** How long to wait until login works. */
    readyTimeout: Duration.optional(),
  }),
);
export type SshArg = z.output<typeof SshArg>;

/** When to pull the image. */
export const PullPolicy = lazySchema(() => z.enum(['missing', 'always', 'never']));
export type PullPolicy = z.output<typeof PullPolicy>;

/** Checkout arguments of the container provider. */
export const ContainerArgs = lazySchema(() =>
  z.strictObject({
    /** Image reference, e.g. `localhost/hostbroker-busybox:latest` or `debian:12`. */
    image: z.string().min(1).describe('image reference'),
    /** Command (replaces the image's CMD). For exec hosts it must keep running. */
    command: CommandArg.optional().describe("command: a string (run by /bin/sh -c) or an argv array; replaces the image's CMD"),
    /** Entrypoint (replaces the image's ENTRYPOINT); `[]` clears it. */
    entrypoint: z
      .union([z.string(), z.array(z.string())])
      .optional()
      .describe("entrypoint (replaces the image's; [] clears it)"),
    /** Environment variables. */
    env: z.record(z.string(), z.string()).optional().describe('environment variables'),
    /** Published ports: a port, `port/proto`, `host:ctr` or `ip:host:ctr`. */
    ports: z.array(PortArg).optional().describe('published ports: 8080, "8080/udp", "9000:8080", "127.0.0.1:9000:8080" (loopback unless an IP is given)'),
    /** Volumes: `/host:/ctr[:ro]`, `name:/ctr` or `/ctr` (anonymous). */
    volumes: z.array(VolumeArg).optional().describe('volumes: "/host:/ctr[:ro]", "name:/ctr", "/ctr" (anonymous)'),
    /** Network to attach to (engine default when omitted). */
    network: z.string().optional().describe('network name'),
    /** Container name; else a random one (prefix `namePrefix` from settings). */
    name: HostName.optional().describe('container name (random when omitted)'),
    /** User the container (and exec sessions) run as. */
    user: z.string().optional().describe('user (and group) to run as, e.g. "1000" or "app:app"'),
    privileged: z.boolean().default(false).describe('run privileged'),
    /** Extra labels (the hostbroker.* ones are always set). */
    labels: z.record(z.string(), z.string()).optional().describe('extra labels'),
    /** `true` (or options): reach the host over SSH; the image must run sshd. Default: exec session. */
    ssh: z.union([z.boolean(), SshArg]).default(false).describe('reach over SSH (image runs sshd): true or { user, port, readyTimeout }'),
    pull: PullPolicy.default('missing').describe('pull policy: missing (default), always, never'),
  }),
);
export type ContainerArgs = z.output<typeof ContainerArgs>;

/**
 * Settings of one engine (`container.instances.<name>` in broker_settings.yaml). With none of
 * `socketPath`/`host`, the engine is discovered (DOCKER_HOST, Podman sockets, Docker socket).
 */
export const ContainerInstance = lazySchema(() =>
  z.strictObject({
    /** Unix socket of the engine, e.g. `/run/podman/podman.sock`. */
    socketPath: z.string().optional(),
    /** TCP host of the engine. */
    host: z.string().optional(),
    port: z.number().int().min(1).max(65535).optional(),
    protocol: z.enum(['http', 'https']).optional(),
    /** TLS files for `https` (paths, never the contents). */
    tlsCaPath: z.string().optional(),
    tlsCertPath: z.string().optional(),
    tlsKeyPath: z.string().optional(),
    /** Prefix of random container names. */
    namePrefix: HostName.optional(),
    /** Default wait for SSH login on SSH hosts. */
    sshReadyTimeout: Duration.default('60s'),
    /**
     * Reap leaves a container whose record id is unknown alone while it is younger than this: its
     * record may be on its way into the inventory from another process. (The Broker honours a
     * `reapGrace` instance setting of any provider.)
     */
    reapGrace: Duration.default('30s'),
    /** Address published ports bind to and SSH connects to. */
    publishAddress: z.string().default('127.0.0.1'),
  }),
);
export type ContainerInstance = z.output<typeof ContainerInstance>;

/** Arguments of the `run` action: run a container to completion, return status and output. */
export const RunArgs = lazySchema(() =>
  z.strictObject({
    image: z.string().min(1).describe('image reference'),
    command: CommandArg.optional().describe("command (default: the image's CMD)"),
    entrypoint: z.union([z.string(), z.array(z.string())]).optional(),
    env: z.record(z.string(), z.string()).optional(),
    volumes: z.array(VolumeArg).optional(),
    network: z.string().optional(),
    user: z.string().optional(),
    /** Data for the command's stdin. */
    input: z.string().optional().describe("data for the command's stdin"),
    /** Limit; the container is killed and removed when it is reached. */
    timeout: Duration.default('1h').describe('limit (default 1h)'),
    pull: PullPolicy.default('missing'),
  }),
);
export type RunArgs = z.output<typeof RunArgs>;

/** What the `run` action returns. */
export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
  image: string;
  durationMs: number;
}

const containerActions = {
  run: { description: 'Run a container to completion and return its exit status and output; it is removed afterwards.', schema: RunArgs },
};

export const container = defineProvider({
  name: 'container',
  description: 'Containers on a Docker Engine API (Docker or Podman), reached by exec or SSH.',
  args: ContainerArgs,
  instance: ContainerInstance,
  actions: containerActions,
  packages: ['dockerode', 'tar-stream'],
  fromTopology: (host, provisioning) => {
    const image = pickImage(host, provisioning);
    return { name: host.name, ...(image ? { image } : {}), ...host.args };
  },
  load: async (): Promise<ImplementationFor<typeof ContainerArgs, typeof ContainerInstance, typeof containerActions>> =>
    (await import('./provider.js')).default,
});
