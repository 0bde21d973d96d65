/**
 * Remote file state and idempotent writes shared by whiteprints, prefabs and bundles:
 * look first (one command), change only what differs, say what changed.
 * @module
 */
import { createHash } from 'node:crypto';
import { CommandError, UserInputError } from '../../lib/errors.js';
import { scrub } from '../../lib/secrets.js';
import { quote } from '../quote.js';
import type { Result } from '../result.js';
import type { Session } from '../session.js';

/** What is at a remote path. */
export interface RemoteState {
  type: 'file' | 'dir' | 'link' | 'other' | 'none';
  /** sha256 of a regular file. */
  sha256?: string;
  /** Link target of a symlink. */
  linkTarget?: string;
  /** Permission bits in octal, e.g. `644`. */
  mode?: string;
  owner?: string;
  group?: string;
}

/** A file mode: a number (`0o644`) or octal digits (`'0644'`, `'644'`). */
export type FileMode = number | string;

/** Normalizes a mode to octal digits without leading zeros (`'644'`, `'1777'`). */
export function modeString(mode: FileMode): string {
  if (typeof mode === 'number') {
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new UserInputError(`file mode ${mode} is not valid; use e.g. 0o644 or '0644'.`);
    return mode.toString(8);
  }
  if (!/^[0-7]{1,5}$/.test(mode) || Number.parseInt(mode, 8) > 0o7777)
    throw new UserInputError(`file mode ${JSON.stringify(mode)} is not valid; use octal digits, e.g. '0644'.`);
  return Number.parseInt(mode, 8).toString(8);
}

/** Reads the state of a remote path in one command. */
export async function remoteState(session: Session, path: string): Promise<RemoteState> {
  const p = quote(path);
  const r = await session.run(
    `if [ -L ${p} ]; then echo link; readlink -- ${p}; elif [ -f ${p} ]; then echo file; sha256sum < ${p} | cut -d' ' -f1; stat -c '%a %U %G' -- ${p}; ` +
      `elif [ -d ${p} ]; then echo dir; echo; stat -c '%a %U %G' -- ${p}; elif [ -e ${p} ]; then echo other; else echo none; fi`,
  );
  if (r.status !== 0) throw commandError(`cannot inspect ${path}`, r, session);
  const [type = 'none', second = '', third = ''] = r.stdout.split('\n');
  const state: RemoteState = { type: type.trim() as RemoteState['type'] };
  if (state.type === 'link') state.linkTarget = second;
  if (state.type === 'file') state.sha256 = second.trim();
  if (state.type === 'file' || state.type === 'dir') {
    const [mode, owner, group] = third.trim().split(' ');
    Object.assign(state, { mode, owner, group });
  }
  return state;
}

/** sha256 of local data, as `sha256sum` prints it. */
export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** What to make sure of for a file or folder besides its content. */
export interface Attributes {
  mode?: FileMode;
  owner?: string;
  group?: string;
}

/** Applies mode/owner/group where they differ; returns descriptions of what changed. */
export async function ensureAttributes(session: Session, path: string, state: RemoteState, attrs: Attributes, dryRun = false): Promise<string[]> {
  const changes: string[] = [];
  const commands: string[] = [];
  if (attrs.owner !== undefined && state.owner !== attrs.owner) {
    changes.push(`owner of ${path} ${state.owner ?? '?'} → ${attrs.owner}`);
    commands.push(`chown ${quote(attrs.owner)} -- ${quote(path)}`);
  }
  if (attrs.group !== undefined && state.group !== attrs.group) {
    changes.push(`group of ${path} ${state.group ?? '?'} → ${attrs.group}`);
    commands.push(`chgrp ${quote(attrs.group)} -- ${quote(path)}`);
  }
  // After chown, since chown may clear setuid bits.
  if (attrs.mode !== undefined && state.mode !== modeString(attrs.mode)) {
    changes.push(`mode of ${path} ${state.mode ?? '?'} → ${modeString(attrs.mode)}`);
    commands.push(`chmod ${modeString(attrs.mode)} -- ${quote(path)}`);
  }
  if (commands.length && !dryRun) {
    const r = await session.run(commands.join(' && '));
    if (r.status !== 0) throw commandError(`cannot set the attributes of ${path}`, r, session);
  }
  return changes;
}

/**
 * Makes a remote file hold `data` (and the given attributes): compares checksums first and
 * writes only when the content differs. Returns descriptions of what changed (none: unchanged).
 * With `dryRun`, changes nothing and returns what would change (validation).
 */
export async function ensureFile(session: Session, path: string, data: Buffer, attrs: Attributes = {}, options: { dryRun?: boolean } = {}): Promise<string[]> {
  const state = await remoteState(session, path);
  if (state.type === 'dir' || state.type === 'other') {
    if (options.dryRun) return [`${path} is a ${state.type === 'dir' ? 'directory' : 'non-regular file'}, not a file`];
    throw new UserInputError(
      `cannot write the file ${path} on ${session.label}: a ${state.type === 'dir' ? 'directory' : 'non-regular file'} is in the way; remove it or choose another path.`,
    );
  }
  if (state.type === 'file' && state.sha256 === sha256(data)) return ensureAttributes(session, path, state, attrs, options.dryRun);
  const what = state.type === 'file' ? `content of ${path} differs` : `${path} does not exist`;
  if (options.dryRun) return [what];
  await session.write(data, path, attrs.mode !== undefined ? { mode: Number.parseInt(modeString(attrs.mode), 8) } : {});
  // Owner and group (and a mode the umask got in the way of) are fixed after the write.
  const after = await remoteState(session, path);
  return [`${state.type === 'file' ? 'updated' : 'created'} ${path}`, ...(await ensureAttributes(session, path, after, attrs))];
}

/** A CommandError naming what failed, the command, its status and (scrubbed) output. */
export function commandError(what: string, r: Result, session?: Session): CommandError {
  const output = tailOf(r.stderr.trim() || r.stdout.trim());
  const where = session ? ` on ${session.label}` : '';
  return new CommandError(`${what}${where}: \`${r.command}\` exited with status ${r.status}${output ? `:\n${output}` : ' and printed nothing'}`, {
    command: r.command,
    status: r.status,
    stdout: scrub(r.stdout),
    stderr: scrub(r.stderr),
  });
}

function tailOf(text: string, lines = 20): string {
  const all = scrub(text).split('\n');
  return (all.length > lines ? [`… (${all.length - lines} earlier lines)`, ...all.slice(-lines)] : all).join('\n');
}
