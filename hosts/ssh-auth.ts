/**
 * How hostbroker logs in over SSH: which methods it offers (ssh-agent, a key file, decrypted with
 * a passphrase from the environment, a password from the environment, OpenSSH's default keys),
 * in what order, and an error that lists what was tried and what the server still accepted.
 * Secrets are read from where they are referenced at connect time and never put in a message.
 * @module
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { AnyAuthMethod, ConnectConfig, ParsedKey, utils as Ssh2Utils } from 'ssh2';
import { HostConnectionError, UserInputError, messageOf } from '../lib/errors.js';

/** Who logs in and with what (record fields; secrets only referenced). */
export interface AuthSpec {
  username: string;
  privateKeyPath?: string | undefined;
  passwordEnv?: string | undefined;
  passphraseEnv?: string | undefined;
  agent?: boolean | undefined;
  forwardAgent?: boolean | undefined;
}

/** Settings used when the spec names nothing (settings `ssh.*`). */
export interface AuthDefaults {
  privateKeyPath?: string | undefined;
  passwordEnv?: string | undefined;
  passphraseEnv?: string | undefined;
  agent?: boolean | undefined;
}

/** The login of one connection attempt: ssh2 options and a record of what was tried. */
export interface AuthPlan {
  config: Partial<ConnectConfig>;
  /** Method descriptions in the order they were tried (names and paths only). */
  tried: string[];
  /** What the server said it still accepts, from its last refusal. */
  accepted: string[] | undefined;
}

interface Method {
  /** The SSH method name the server lists (`publickey`, `password`, ...). */
  wire: string;
  describe: string;
  auth: AnyAuthMethod;
}

const DEFAULT_KEYS = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

/**
 * Builds the login for `label`. Throws a {@link UserInputError} for a reference that points
 * nowhere (unset variable, unreadable key) and a `passphrase` {@link HostConnectionError} for a key
 * that cannot be decrypted.
 */
export function authPlan(spec: AuthSpec, defaults: AuthDefaults, label: string, utils: typeof Ssh2Utils): AuthPlan {
  const keyPath = spec.privateKeyPath ?? (spec.passwordEnv ? undefined : defaults.privateKeyPath);
  const passwordEnv = spec.passwordEnv ?? (spec.privateKeyPath ? undefined : defaults.passwordEnv);
  const passphraseEnv = spec.passphraseEnv ?? defaults.passphraseEnv;
  const username = spec.username;
  const methods: Method[] = [];
  const socket = process.env.SSH_AUTH_SOCK;
  const wantAgent = spec.agent ?? defaults.agent;
  if (wantAgent === true && !socket)
    throw new UserInputError(`${label} logs in with the ssh-agent, but SSH_AUTH_SOCK is not set; start an agent (\`eval $(ssh-agent)\`, \`ssh-add\`) first.`);
  if (spec.forwardAgent && !socket)
    throw new UserInputError(`${label} asks for agent forwarding, but SSH_AUTH_SOCK is not set; start an agent (\`eval $(ssh-agent)\`, \`ssh-add\`) first.`);
  // As OpenSSH: the agent first, when asked for or when nothing else is named.
  const agentToo = socket !== undefined && wantAgent !== false && (wantAgent === true || (!keyPath && !passwordEnv));
  if (agentToo) methods.push({ wire: 'publickey', describe: 'agent', auth: { type: 'agent', username, agent: socket } });
  if (keyPath) {
    const key = decryptKey(readKey(keyPath, label), keyPath, passphraseEnv, label, utils);
    methods.push({ wire: 'publickey', describe: `publickey ${keyPath}`, auth: { type: 'publickey', username, key } });
  }
  if (passwordEnv) {
    const password = process.env[passwordEnv];
    if (password === undefined) throw new UserInputError(`the password for ${label} should be in the environment variable ${passwordEnv}, which is not set.`);
    methods.push({ wire: 'password', describe: `password $${passwordEnv}`, auth: { type: 'password', username, password } });
    methods.push({
      wire: 'keyboard-interactive',
      describe: `keyboard-interactive $${passwordEnv}`,
      auth: {
        type: 'keyboard-interactive',
        username,
        prompt: (_n: string, _i: string, _l: string, prompts: unknown[], finish: (answers: string[]) => void) => finish(prompts.map(() => password)),
      },
    });
  }
  if (!keyPath && !passwordEnv) {
    for (const name of DEFAULT_KEYS) {
      const path = join(homedir(), '.ssh', name);
      let data: Buffer;
      try {
        data = readFileSync(path);
      } catch {
        continue;
      }
      const key = utils.parseKey(data, passphraseEnv ? process.env[passphraseEnv] : undefined);
      // A default key that cannot be used is skipped, as OpenSSH does without a terminal.
      if (!(key instanceof Error)) methods.push({ wire: 'publickey', describe: `publickey ${path}`, auth: { type: 'publickey', username, key } });
    }
  }
  const plan: AuthPlan = { config: {}, tried: [], accepted: undefined };
  // ssh2 forwards the agent only when `agent` is in the config too.
  if (spec.forwardAgent) Object.assign(plan.config, { agent: socket, agentForward: true });
  let asked = false;
  plan.config.authHandler = (methodsLeft: string[] | null) => {
    if (methodsLeft) plan.accepted = methodsLeft;
    // `none` first, as OpenSSH: the server answers with the methods it accepts.
    if (!asked) {
      asked = true;
      return { type: 'none', username };
    }
    for (let next = methods.shift(); next; next = methods.shift()) {
      if (methodsLeft && !methodsLeft.includes(next.wire)) continue;
      plan.tried.push(next.describe);
      return next.auth;
    }
    return false;
  };
  return plan;
}

/** The error for a refused login: methods tried and still accepted, never a secret. */
export function authError(plan: AuthPlan, label: string, username: string, cause: unknown, via?: string): HostConnectionError {
  const tried = plan.tried.length ? plan.tried.join(', ') : 'nothing (no agent, key or password was available)';
  const accepted = plan.accepted?.length ? `; it accepts ${plan.accepted.join(', ')}` : '';
  return new HostConnectionError(
    `${label} refused the login as ${username}: tried ${tried}${accepted}. Check the username and the key, agent or password for this host (settings ssh.*, or the host's own).`,
    {
      cause,
      reason: 'auth',
      methodsTried: [...plan.tried],
      ...(plan.accepted ? { methodsAccepted: [...plan.accepted] } : {}),
      ...(via ? { via } : {}),
    },
  );
}

/** Whether an ssh2 error is a refused login. */
export function isAuthFailure(error: unknown): boolean {
  return (error as { level?: string })?.level === 'client-authentication' || /authentication methods failed/i.test(messageOf(error));
}

function readKey(path: string, label: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new UserInputError(`cannot read the private key ${path} for ${label}: ${messageOf(error)}.`, { cause: error });
  }
}

/** Parses (and decrypts) a key file; a missing or wrong passphrase is a clear `passphrase` error. */
function decryptKey(data: Buffer, path: string, passphraseEnv: string | undefined, label: string, utils: typeof Ssh2Utils): ParsedKey {
  const passphrase = passphraseEnv ? process.env[passphraseEnv] : undefined;
  if (passphraseEnv && passphrase === undefined)
    throw new UserInputError(`the passphrase of ${path} (for ${label}) should be in the environment variable ${passphraseEnv}, which is not set.`);
  const key = utils.parseKey(data, passphrase);
  if (!(key instanceof Error)) return Array.isArray(key) ? (key[0] as ParsedKey) : key;
  const encrypted = /encrypted|passphrase/i.test(key.message);
  if (!encrypted) throw new UserInputError(`the private key ${path} for ${label} is not a key ssh2 can read: ${key.message}.`);
  const message = passphraseEnv
    ? `the private key ${path} for ${label} could not be decrypted with the passphrase in $${passphraseEnv}; check that variable.`
    : `the private key ${path} for ${label} is encrypted; put its passphrase in an environment variable and name it in passphraseEnv (or load the key into ssh-agent and set agent: true).`;
  throw new HostConnectionError(message, { reason: 'passphrase' });
}
