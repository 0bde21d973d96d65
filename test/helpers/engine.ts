/**
 * The real container engine for tests: found through the same discovery users get. Tests skip
 * with a reason when none answers, but never with CI=true (there they fail: run
 * scripts/setup-test-env.sh).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { messageOf } from '../../lib/errors.js';
import { LABELS } from '../../providers/container/create-request.js';
import { type Engine, connectEngine } from '../../providers/container/engine.js';

/** The images scripts/setup-test-env.sh builds. */
export const BUSYBOX_IMAGE = 'localhost/hostbroker-busybox:latest';
export const SSHD_IMAGE = 'localhost/hostbroker-sshd:bookworm';

/** The engine and why tests cannot run (false when they can). */
export interface EngineProbe {
  engine: Engine | undefined;
  skip: string | false;
}

/** Finds the engine and checks the test images exist. */
export async function probeEngine(images: string[] = [BUSYBOX_IMAGE, SSHD_IMAGE]): Promise<EngineProbe> {
  let engine: Engine;
  try {
    engine = await connectEngine({});
  } catch (error) {
    return { engine: undefined, skip: `no container engine: ${messageOf(error).split('\n').slice(0, 6).join(' ')} (run scripts/setup-test-env.sh as root)` };
  }
  for (const image of images) {
    try {
      await engine.docker.getImage(image).inspect();
    } catch {
      return { engine, skip: `test image ${image} is missing on ${engine.where}: run scripts/setup-test-env.sh` };
    }
  }
  return { engine, skip: false };
}

/** `skip` unless CI=true, where a missing engine must fail the run instead. */
export function skipReason(probe: EngineProbe): string | false {
  return process.env.CI === 'true' ? false : probe.skip;
}

/** Containers (running or not) carrying a label, asked of the engine itself. */
export async function containersLabelled(engine: Engine, key: string, value: string): Promise<Dockerode.ContainerInfo[]> {
  return engine.docker.listContainers({ all: true, filters: { label: [`${key}=${value}`] } });
}

/** Containers of a broker directory's identity. */
export function containersOfBroker(engine: Engine, brokerId: string): Promise<Dockerode.ContainerInfo[]> {
  return containersLabelled(engine, LABELS.broker, brokerId);
}

/** Whether a container exists, asked of the engine. */
export async function containerExists(engine: Engine, id: string): Promise<boolean> {
  try {
    await engine.docker.getContainer(id).inspect();
    return true;
  } catch {
    return false;
  }
}

/** Removes every container of a broker identity (test cleanup; kills first for speed). */
export async function removeBrokerContainers(engine: Engine, brokerId: string): Promise<void> {
  for (const c of await containersOfBroker(engine, brokerId)) {
    const container = engine.docker.getContainer(c.Id);
    await container.kill({ signal: 'KILL' }).catch(() => undefined);
    await container.remove({ force: true, v: true }).catch(() => undefined);
  }
}

/** A fresh broker directory. */
export function tempDirectory(prefix = 'hb-container-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** A private Podman API service on its own socket (for "engine goes away" tests). */
export interface PrivateService {
  socketPath: string;
  process: ChildProcess;
  /** Kills the service (SIGKILL) and waits for it to exit. */
  kill(): Promise<void>;
  dir: string;
}

/** Starts `podman system service` on a socket (a temp one by default) and waits until it answers. */
export async function startPodmanService(at?: string): Promise<PrivateService> {
  const dir = at ? join(at, '..') : await mkdtemp(join(tmpdir(), 'hb-podman-svc-'));
  const socketPath = at ?? join(dir, 'podman.sock');
  const child = spawn('podman', ['system', 'service', '--time=0', `unix://${socketPath}`], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 15_000;
  const { default: Docker } = await import('dockerode');
  for (;;) {
    try {
      await new Docker({ socketPath }).ping();
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`podman system service did not answer on ${socketPath}: ${messageOf(error)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    socketPath,
    process: child,
    dir,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await rm(socketPath, { force: true });
    },
  };
}
