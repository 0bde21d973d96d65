/**
 * Target facts (as marchitect's `_target`): who and what the remote machine is, gathered in one
 * remote command and cached per host.
 * @module
 */
import { CommandError } from '../../lib/errors.js';
import { scrub } from '../../lib/secrets.js';
import { labelOf, type ConfigTarget } from './target.js';

/** Facts about a host, available as `this.target` in whiteprints and `target` in templates. */
export interface Facts {
  /** Login user of the session. */
  user: string;
  /** Address the host is reached at (what the session connects to). */
  host: string;
  /** Kernel release, e.g. `6.1.0-18-amd64`. */
  kernel: string;
  /** Distribution id from /etc/os-release, e.g. `debian`, `ubuntu`, `fedora` (empty when unknown). */
  distro: string;
  /** Distribution version id, e.g. `12`, `22.04` (empty when unknown). */
  distroVersion: string;
  /** Short hostname the machine reports. */
  hostname: string;
  /** Fully-qualified domain name (the hostname when none is configured). */
  fqdn: string;
  /** Online CPUs. */
  cpuCount: number;
  /** Home directory of the login user (used to expand `~/` in remote paths). */
  home: string;
  /** Machine architecture, e.g. `x86_64`. */
  arch: string;
}

// One command, POSIX sh and busybox friendly; os-release is read in a subshell so its variables stay there.
const FACTS_COMMAND = [
  'u=$(id -un 2>/dev/null || whoami 2>/dev/null || echo "${USER:-}")',
  'h=$(hostname 2>/dev/null || uname -n)',
  'f=$(hostname -f 2>/dev/null || echo "$h")',
  'c=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || grep -c ^processor /proc/cpuinfo 2>/dev/null || echo 1)',
  'printf "%s\\n" "user=$u" "kernel=$(uname -r)" "arch=$(uname -m)" "hostname=$h" "fqdn=$f" "cpus=$c" "home=$HOME"',
  '(ID=; VERSION_ID=; [ -r /etc/os-release ] && . /etc/os-release; printf "%s\\n" "distro=$ID" "distro_version=$VERSION_ID")',
].join('; ');

const cache = new WeakMap<object, Promise<Facts>>();

/**
 * Facts of a host: one remote command the first time, then cached for the life of the host object.
 * Pass `refresh: true` to gather them again.
 */
export function gatherFacts(target: ConfigTarget, options: { refresh?: boolean } = {}): Promise<Facts> {
  const key = target as object;
  let facts = options.refresh ? undefined : cache.get(key);
  if (!facts) {
    facts = readFacts(target);
    cache.set(key, facts);
    facts.catch(() => cache.delete(key));
  }
  return facts;
}

async function readFacts(target: ConfigTarget): Promise<Facts> {
  const r = await target.session.run(FACTS_COMMAND);
  if (r.status !== 0) {
    throw new CommandError(`cannot gather facts of ${labelOf(target)}: the command exited ${r.status}: ${scrub(r.stderr.trim() || r.stdout.trim())}`, r);
  }
  const values = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1).trim());
  }
  const get = (k: string): string => values.get(k) ?? '';
  const cpus = Number.parseInt(get('cpus'), 10);
  return {
    user: get('user'),
    host: target.hostname || target.session.label,
    kernel: get('kernel'),
    distro: get('distro'),
    distroVersion: get('distro_version'),
    hostname: get('hostname'),
    fqdn: get('fqdn') || get('hostname'),
    cpuCount: Number.isFinite(cpus) && cpus > 0 ? cpus : 1,
    home: get('home') || '/',
    arch: get('arch'),
  };
}
