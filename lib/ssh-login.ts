/**
 * The SSH login of machines a lab service hands out (Beaker, mr-provisioner): per-instance
 * settings that fall back to the `ssh` settings. The service knows nothing of it; the record's
 * connection does.
 * @module
 */
import type { SshConnection } from './records.js';
import type { SshSettings } from './settings.js';
import { lazySchema, z } from './zod.js';

/** Instance settings fields, spread into a provider's instance schema. */
export const sshLoginFields = lazySchema(() => ({
  /** SSH user of the machines (default: `ssh.username`). */
  sshUsername: z.string().optional(),
  /** Private key file for them (default: `ssh.privateKeyPath`). */
  sshPrivateKeyPath: z.string().optional(),
  /** Environment variable holding their SSH password (default: `ssh.passwordEnv`); never the password itself. */
  sshPasswordEnv: z.string().optional(),
}));

/** The connection to a machine at `host`: the instance's login, else the `ssh` settings'. */
export function sshLogin(
  host: string,
  instance: { sshUsername?: string | undefined; sshPrivateKeyPath?: string | undefined; sshPasswordEnv?: string | undefined },
  ssh: SshSettings,
): SshConnection {
  return {
    kind: 'ssh',
    host,
    port: ssh.port,
    username: instance.sshUsername ?? ssh.username,
    privateKeyPath: instance.sshPrivateKeyPath ?? ssh.privateKeyPath,
    passwordEnv: instance.sshPasswordEnv ?? ssh.passwordEnv,
  };
}
