/**
 * What configuration runs against: anything with a session (a Host, or a bare Session wrapper).
 * @module
 */
import type { Session } from '../session.js';

/** A host that whiteprints and bundles can be applied to. `Host` satisfies it. */
export interface ConfigTarget {
  readonly session: Session;
  /** Address the host is reached at (the `host` fact). */
  readonly hostname?: string;
  /** Display name, for messages. */
  readonly name?: string;
}

/** The name of a target for messages. */
export function labelOf(target: ConfigTarget): string {
  return target.name || target.hostname || target.session.label;
}

/** Expands a leading `~` or `~/` against the remote home directory (remote shells do not see it quoted). */
export function expandHome(path: string, home: string): string {
  if (path === '~') return home;
  if (path.startsWith('~/')) return `${home.replace(/\/+$/, '')}/${path.slice(2)}`;
  return path;
}
