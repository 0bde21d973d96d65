/**
 * From checkout arguments to the engine's create request, and from labels back to records.
 * Pure functions: no engine needed, unit-testable.
 * @module
 */
import type Dockerode from 'dockerode';
import { UserInputError } from '../../lib/errors.js';
import { TAGS, standardTags } from '../../lib/provider.js';
import { PUBLIC_KEY_LINE, Recipe, type HostRecord } from '../../lib/records.js';
import { redact } from '../../lib/secrets.js';
import type { CommandArg, ContainerArgs, PortArg, VolumeArg } from './definition.js';

/** Labels this provider sets beyond {@link standardTags}. */
export const LABELS = {
  ...TAGS,
  instance: 'hostbroker.instance',
  recipe: 'hostbroker.recipe',
  created: 'hostbroker.created',
  /** `{"user":"root","port":22}` on hosts reached over SSH. */
  ssh: 'hostbroker.ssh',
  /** The public half of the host key hostbroker gave sshd (`ssh-ed25519 AAAA...`): pinned again by sync. */
  hostKey: 'hostbroker.hostkey',
  /** Set on containers of the `run` action (not hosts). */
  action: 'hostbroker.action',
} as const;

/** `/bin/sh -c` for a string, the array as is. */
export function toArgv(command: CommandArg): string[] {
  return typeof command === 'string' ? ['/bin/sh', '-c', command] : command;
}

/** One published port in engine terms. */
export interface PortBinding {
  /** `22/tcp` */
  key: string;
  hostIp: string;
  /** '' for a random port. */
  hostPort: string;
}

/** Parses the `ports` argument. */
export function parsePort(port: PortArg, publishAddress: string): PortBinding {
  if (typeof port === 'number') return { key: `${port}/tcp`, hostIp: publishAddress, hostPort: '' };
  if (typeof port === 'object') return { key: `${port.container}/${port.protocol}`, hostIp: port.hostIp, hostPort: port.host ? String(port.host) : '' };
  const [spec, protocol = 'tcp'] = port.split('/') as [string, string?];
  let ip = publishAddress;
  let rest = spec;
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(spec);
  if (v6) {
    ip = v6[1]!;
    rest = v6[2]!;
  }
  const parts = rest.split(':');
  if (parts.length === 3) {
    ip = parts[0]!;
    return { key: `${parts[2]}/${protocol}`, hostIp: ip, hostPort: parts[1]! };
  }
  if (parts.length === 2) return { key: `${parts[1]}/${protocol}`, hostIp: ip, hostPort: parts[0]! };
  return { key: `${parts[0]}/${protocol}`, hostIp: ip, hostPort: '' };
}

/** Binds (`src:dst[:ro]`) and anonymous volumes (`dst`) of the `volumes` argument. */
export function parseVolumes(volumes: VolumeArg[]): { binds: string[]; anonymous: string[] } {
  const binds: string[] = [];
  const anonymous: string[] = [];
  for (const v of volumes) {
    if (typeof v === 'string') {
      const parts = v.split(':');
      if (parts.length === 1) anonymous.push(parts[0]!);
      else binds.push(v);
      continue;
    }
    if (v.source) binds.push(`${v.source}:${v.target}${v.readOnly ? ':ro' : ''}`);
    else anonymous.push(v.target);
  }
  for (const target of anonymous) {
    if (!target.startsWith('/'))
      throw new UserInputError(`volume ${JSON.stringify(target)}: an anonymous volume needs an absolute path in the container, e.g. "/data".`);
  }
  return { binds, anonymous };
}

/** SSH options resolved from the `ssh` argument. */
export interface SshPlan {
  user: string;
  port: number;
}

/** What {@link createOptions} needs. */
export interface CreateInput {
  args: ContainerArgs;
  name: string;
  record: HostRecord;
  instance: string;
  publishAddress: string;
  ssh?: SshPlan;
  /** Public key line for SSH hosts (not a secret). */
  publicKey?: string;
  /** Public half of the host key sshd serves, for SSH hosts. */
  hostPublicKey?: string;
}

/** The labels of a host container. */
export function hostLabels(input: Pick<CreateInput, 'args' | 'name' | 'record' | 'instance' | 'ssh' | 'hostPublicKey'>): Record<string, string> {
  return {
    ...(input.args.labels ?? {}),
    ...standardTags(input.record),
    [LABELS.name]: input.name,
    [LABELS.instance]: input.instance,
    [LABELS.created]: input.record.createdAt,
    [LABELS.recipe]: JSON.stringify(redact(input.record.recipe, 'drop')),
    ...(input.ssh ? { [LABELS.ssh]: JSON.stringify(input.ssh) } : {}),
    ...(input.hostPublicKey ? { [LABELS.hostKey]: input.hostPublicKey } : {}),
  };
}

/** The engine's create request for a host container. */
export function createOptions(input: CreateInput): Dockerode.ContainerCreateOptions {
  const { args, name, ssh } = input;
  const ports = (args.ports ?? []).map((p) => parsePort(p, input.publishAddress));
  if (ssh && !ports.some((p) => p.key === `${ssh.port}/tcp`)) ports.push({ key: `${ssh.port}/tcp`, hostIp: input.publishAddress, hostPort: '' });
  const exposed: Record<string, Record<string, never>> = {};
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const p of ports) {
    exposed[p.key] = {};
    (bindings[p.key] ??= []).push({ HostIp: p.hostIp, HostPort: p.hostPort });
  }
  const { binds, anonymous } = parseVolumes(args.volumes ?? []);
  const env = Object.entries(args.env ?? {}).map(([k, v]) => `${k}=${v}`);
  if (input.publicKey) env.push(`HOSTBROKER_AUTHORIZED_KEY=${input.publicKey}`);
  const options: Dockerode.ContainerCreateOptions = {
    name,
    Image: args.image,
    Hostname: name.slice(0, 63),
    Labels: hostLabels(input),
    Env: env,
    ExposedPorts: exposed,
    // Podman stops with a 10 s grace on force-removal unless told otherwise; hosts need none.
    StopTimeout: 0,
    HostConfig: {
      PortBindings: bindings,
      Binds: binds,
      Privileged: args.privileged,
      ...(args.network ? { NetworkMode: args.network } : {}),
    },
  };
  if (anonymous.length) options.Volumes = Object.fromEntries(anonymous.map((t) => [t, {}]));
  if (args.command) options.Cmd = toArgv(args.command);
  if (args.entrypoint !== undefined) options.Entrypoint = typeof args.entrypoint === 'string' ? [args.entrypoint] : args.entrypoint;
  if (args.user) options.User = args.user;
  return options;
}

/** What the labels of a container tell about its host. */
export interface LabelledHost {
  id?: string;
  owner?: string;
  brokerId?: string;
  name?: string;
  instance?: string;
  createdAt?: string;
  leaseExpires?: string;
  recipe?: Recipe;
  ssh?: SshPlan;
  hostPublicKey?: string;
  action?: string;
}

/** Reads the hostbroker labels of a container (bad JSON is ignored, not fatal). */
export function readLabels(labels: Record<string, string> | undefined): LabelledHost {
  const l = labels ?? {};
  const out: LabelledHost = {};
  if (l[LABELS.id]) out.id = l[LABELS.id];
  if (l[LABELS.owner]) out.owner = l[LABELS.owner];
  if (l[LABELS.broker]) out.brokerId = l[LABELS.broker];
  if (l[LABELS.name]) out.name = l[LABELS.name];
  if (l[LABELS.instance]) out.instance = l[LABELS.instance];
  if (l[LABELS.created]) out.createdAt = l[LABELS.created];
  if (l[LABELS.lease]) out.leaseExpires = l[LABELS.lease];
  if (l[LABELS.action]) out.action = l[LABELS.action];
  const hostKey = l[LABELS.hostKey];
  if (hostKey && PUBLIC_KEY_LINE.test(hostKey)) out.hostPublicKey = hostKey;
  const recipe = parseJson(l[LABELS.recipe]);
  const parsedRecipe = Recipe.safeParse(recipe);
  if (parsedRecipe.success) out.recipe = parsedRecipe.data;
  const ssh = parseJson(l[LABELS.ssh]) as Partial<SshPlan> | undefined;
  if (ssh && typeof ssh.user === 'string' && typeof ssh.port === 'number') out.ssh = { user: ssh.user, port: ssh.port };
  return out;
}

function parseJson(text: string | undefined): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Whether a lease (ISO time) has passed. */
export function leasePassed(leaseExpires: string | undefined, now = Date.now()): boolean {
  if (!leaseExpires) return false;
  const t = Date.parse(leaseExpires);
  return Number.isFinite(t) && t < now;
}
