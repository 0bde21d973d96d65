/**
 * The container engine as the crash test sees it: asked directly over its Docker-compatible API
 * (not through hostbroker), so leftovers are counted by the engine itself.
 */
import { existsSync } from 'node:fs';
import Docker from 'dockerode';
import { TAGS } from '../../lib/provider.js';

function socketPath(): string | undefined {
  const host = process.env.DOCKER_HOST;
  if (host?.startsWith('unix://')) return host.slice('unix://'.length);
  return ['/run/podman/podman.sock', '/var/run/docker.sock'].find((p) => existsSync(p));
}

function client(): Docker | undefined {
  const path = socketPath();
  return path ? new Docker({ socketPath: path }) : undefined;
}

/** Whether an engine answers `ping`. */
export async function engineAnswers(): Promise<boolean> {
  const docker = client();
  if (!docker) return false;
  try {
    await docker.ping();
    return true;
  } catch {
    return false;
  }
}

/** Ids and names of every container (running or not) labelled with this broker id. */
export async function engineContainers(brokerId: string): Promise<string[]> {
  const docker = client();
  if (!docker) throw new Error('no container engine socket');
  const list = await docker.listContainers({ all: true, filters: { label: [`${TAGS.broker}=${brokerId}`] } });
  return list.map((c) => `${c.Id.slice(0, 12)} ${c.Names.join(',')} ${c.State} ${c.Labels[TAGS.id] ?? ''}`);
}
