/**
 * The `ls -l` line an SFTP server sends with each directory entry (OpenSSH's ls_file format),
 * which `sftp`'s `ls -l` prints as it is.
 * @module
 */
import { readFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';

/** User and group names by id, from /etc/passwd and /etc/group. */
export interface Names {
  user(uid: number): string | undefined;
  group(gid: number): string | undefined;
}

async function idTable(file: string): Promise<Map<number, string>> {
  const table = new Map<number, string>();
  const text = await readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    if (name && id && /^\d+$/.test(id) && !table.has(Number(id))) table.set(Number(id), name);
  }
  return table;
}

export async function nameLookup(): Promise<Names> {
  const [users, groups] = await Promise.all([idTable('/etc/passwd'), idTable('/etc/group')]);
  return { user: (uid) => users.get(uid), group: (gid) => groups.get(gid) };
}

const TYPES: [number, string][] = [
  [0o040000, 'd'],
  [0o120000, 'l'],
  [0o020000, 'c'],
  [0o060000, 'b'],
  [0o010000, 'p'],
  [0o140000, 's'],
];

/** strmode(3): type and permission letters, setuid/setgid/sticky included. */
function modeString(mode: number): string {
  const type = TYPES.find(([bits]) => (mode & 0o170000) === bits)?.[1] ?? '-';
  const triple = (shift: number, special: number, letter: string): string => {
    const r = mode & (0o4 << shift) ? 'r' : '-';
    const w = mode & (0o2 << shift) ? 'w' : '-';
    const x = mode & (0o1 << shift);
    const last = mode & special ? (x ? letter : letter.toUpperCase()) : x ? 'x' : '-';
    return r + w + last;
  };
  return type + triple(6, 0o4000, 's') + triple(3, 0o2000, 's') + triple(0, 0o1000, 't');
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "%b %e %H:%M" within the last six months, else "%b %e  %Y" (as ls and sftp-server). */
function timeString(mtimeMs: number, now = Date.now()): string {
  const d = new Date(mtimeMs);
  const day = String(d.getDate()).padStart(2, ' ');
  const recent = now - (365 * 24 * 60 * 60 * 1000) / 2 < mtimeMs && mtimeMs <= now;
  const tail = recent ? `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}` : ` ${d.getFullYear()}`;
  return `${MONTHS[d.getMonth()]} ${day} ${tail}`;
}

export function longname(filename: string, s: Stats, names: Names): string {
  const user = (names.user(s.uid) ?? String(s.uid)).padEnd(8);
  const group = (names.group(s.gid) ?? String(s.gid)).padEnd(8);
  // strmode leaves a space after the letters (for an ACL mark), then the format adds one.
  return `${modeString(s.mode)}  ${String(s.nlink).padStart(3)} ${user} ${group} ${String(s.size).padStart(8)} ${timeString(s.mtimeMs)} ${filename}`;
}
