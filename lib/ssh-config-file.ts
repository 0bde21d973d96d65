/**
 * Reading the user's OpenSSH client config (`~/.ssh/config`, or another file) for one host, with
 * the maintained `ssh-config` parser: HostName, Port, User, IdentityFile and ProxyJump from the
 * directives before any `Host` and from `Host` blocks that name the host literally. `Host`
 * patterns (`*`, `?`, `!`) and `Match` blocks are not evaluated: one that might apply is
 * reported as a warning, so nobody is surprised that hostbroker reached a host differently.
 * @module
 */
import { readFileSync, statSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import SSHConfig from 'ssh-config';
import { UserInputError, messageOf } from './errors.js';
import type { JumpHost } from './records.js';

/** What the config says about one host (only what it says). */
export interface SshConfigEntry {
  hostName?: string;
  port?: number;
  user?: string;
  identityFile?: string;
  /** From ProxyJump (`none` gives an empty list). */
  jump?: JumpHost[];
}

/** `true` is `~/.ssh/config`. */
export function sshConfigPath(setting: true | string): string {
  return setting === true ? join(homedir(), '.ssh', 'config') : expandHome(setting);
}

/** `~/x` means the user's home, as in OpenSSH. */
export function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? join(homedir(), path.slice(1)) : path;
}

/** Parsed files by path, with the modification time they were read at. */
const parsed = new Map<string, { mtimeMs: number; config: SSHConfig }>();

function load(path: string, setting: true | string): SSHConfig | undefined {
  let text: string;
  let mtimeMs: number;
  try {
    mtimeMs = statSync(path).mtimeMs;
    const cached = parsed.get(path);
    if (cached?.mtimeMs === mtimeMs) return cached.config;
    text = readFileSync(path, 'utf8');
  } catch (error) {
    // `true` means "if there is one"; a path the user named must exist.
    if (setting === true && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UserInputError(`cannot read the OpenSSH config ${path} (sshConfig): ${messageOf(error)}.`, { cause: error });
  }
  let config: SSHConfig;
  try {
    config = SSHConfig.parse(text);
  } catch (error) {
    throw new UserInputError(`the OpenSSH config ${path} cannot be parsed: ${messageOf(error)}; fix it or turn sshConfig off.`, { cause: error });
  }
  parsed.set(path, { mtimeMs, config });
  return config;
}

type Line = SSHConfig[number];

function directiveValue(line: { value: unknown }): string {
  const v = line.value;
  return Array.isArray(v) ? v.map((p: { val: string }) => p.val).join(' ') : String(v);
}

function names(line: { value: unknown }): string[] {
  const v = line.value;
  return Array.isArray(v) ? v.map((p: { val: string }) => p.val) : String(v).split(/\s+/);
}

/** OpenSSH's pattern syntax, for the warning only. */
function globMatches(pattern: string, host: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    'i',
  );
  return re.test(host);
}

/**
 * What the config at `setting` says about `alias`. `warn` hears of each `Host` pattern that
 * matches and each `Match` block, which are ignored.
 */
export function lookupSshConfig(alias: string, setting: true | string, warn: (message: string) => void = () => undefined): SshConfigEntry {
  const path = sshConfigPath(setting);
  const config = load(path, setting);
  if (!config) return {};
  const values = new Map<string, string>();
  // OpenSSH: the first value obtained for a parameter wins.
  const take = (lines: readonly Line[]) => {
    for (const line of lines) {
      if (line.type !== SSHConfig.DIRECTIVE || 'config' in line) continue;
      const key = line.param.toLowerCase();
      if (!values.has(key)) values.set(key, directiveValue(line));
    }
  };
  take(config);
  for (const line of config) {
    if (line.type !== SSHConfig.DIRECTIVE || !('config' in line)) continue;
    const section = line.param.toLowerCase();
    if (section === 'match') {
      warn(
        `${path}: \`Match ${directiveValue(line)}\` is ignored (hostbroker reads only Host blocks that name ${alias}); set what it says on the host instead.`,
      );
      continue;
    }
    const patterns = names(line);
    if (patterns.includes(alias)) {
      take(line.config);
      continue;
    }
    const wild = patterns.filter((p) => /[*?!]/.test(p));
    if (wild.some((p) => !p.startsWith('!') && globMatches(p, alias)))
      warn(
        `${path}: \`Host ${directiveValue(line)}\` matches ${alias} but patterns are ignored; name ${alias} in a Host line or set what it says on the host.`,
      );
  }
  const entry: SshConfigEntry = {};
  const hostName = values.get('hostname');
  if (hostName) entry.hostName = hostName.replace(/%h/g, alias);
  const port = Number(values.get('port'));
  if (Number.isInteger(port) && port > 0) entry.port = port;
  const user = values.get('user');
  if (user) entry.user = user;
  const identity = values.get('identityfile');
  if (identity && identity.toLowerCase() !== 'none') entry.identityFile = expandHome(identity.replace(/^"|"$/g, ''));
  const proxyJump = values.get('proxyjump');
  if (proxyJump) entry.jump = proxyJump.toLowerCase() === 'none' ? [] : parseProxyJump(proxyJump, setting, warn);
  return entry;
}

/**
 * A ProxyJump value (`[user@]host[:port],...`, as `ssh -J` takes) as jump hosts; with `setting`,
 * each host is also looked up in that OpenSSH config.
 */
export function parseProxyJump(value: string, setting?: true | string | false, warn: (message: string) => void = () => undefined): JumpHost[] {
  return value.split(',').map((hop) => jumpFrom(hop.trim(), setting || undefined, warn));
}

/** One `[user@]host[:port]` of ProxyJump, its alias looked up in the same config. */
function jumpFrom(spec: string, setting: true | string | undefined, warn: (message: string) => void): JumpHost {
  const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(spec.replace(/^ssh:\/\//, ''));
  if (!m) throw new UserInputError(`jump host \`${spec}\`${setting ? ` in ${sshConfigPath(setting)}` : ''} is not [user@]host[:port].`);
  const alias = m[2]!.replace(/^\[|\]$/g, '');
  const own = setting ? lookupSshConfig(alias, setting, warn) : {};
  return {
    host: own.hostName ?? alias,
    port: m[3] ? Number(m[3]) : (own.port ?? 22),
    // OpenSSH logs in to a jump host as the local user unless told otherwise.
    username: m[1] ?? own.user ?? userInfo().username,
    ...(own.identityFile ? { privateKeyPath: own.identityFile } : {}),
  };
}
