/**
 * The SSH details a checkout records beyond what the provider said: jump hosts (the request's,
 * else the provider's, else settings `ssh.jump`, else the OpenSSH config's ProxyJump) and, with
 * settings `ssh.sshConfig`, what `~/.ssh/config` says about the host. What is explicit wins.
 * Recorded, not applied at connect time, so the OpenSSH config and Ansible outputs and every
 * other process see the same route.
 * @module
 */
import { z } from './zod.js';
import { UserInputError } from './errors.js';
import { JumpHost, type Connection } from './records.js';
import type { Settings } from './settings.js';
import { formatIssues } from './settings.js';
import { lookupSshConfig } from './ssh-config-file.js';

/** A checkout's `jump` option, validated. */
export function parseJumpOption(value: unknown): JumpHost[] | undefined {
  if (value === undefined) return undefined;
  const result = z.array(JumpHost).safeParse(value);
  if (!result.success)
    throw new UserInputError(`jump: ${formatIssues(result.error, 'jump')}; give a list of { host, port, username, privateKeyPath | passwordEnv | agent }.`);
  return result.data;
}

/** The connection to record for a freshly provisioned host. */
export function withSshDefaults(
  connection: Connection | undefined,
  requestJump: JumpHost[] | undefined,
  settings: Settings,
  warn: (message: string) => void,
): Connection | undefined {
  if (connection?.kind !== 'ssh') return connection;
  const out = { ...connection };
  const fromFile = settings.ssh.sshConfig ? lookupSshConfig(connection.host, settings.ssh.sshConfig, warn) : {};
  if (fromFile.hostName) out.host = fromFile.hostName;
  if (!out.privateKeyPath && !out.passwordEnv && !settings.ssh.privateKeyPath && fromFile.identityFile) out.privateKeyPath = fromFile.identityFile;
  const jump = requestJump ?? connection.jump ?? settings.ssh.jump ?? fromFile.jump;
  if (jump?.length) out.jump = jump;
  else delete out.jump;
  return out;
}

/** A provider's fresh view of a connection (sync) keeps the recorded jump hosts when it names none. */
export function keepRoute(discovered: Connection | undefined, existing: Connection | undefined): Connection | undefined {
  if (discovered?.kind !== 'ssh' || existing?.kind !== 'ssh' || discovered.jump || !existing.jump) return discovered;
  return { ...discovered, jump: existing.jump };
}
