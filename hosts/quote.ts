/**
 * POSIX shell quoting, so that arguments reach the remote command unchanged.
 * @module
 */

/** Quotes one argument for a POSIX shell: `it's` → `'it'\''s'`. */
export function quote(arg: string | number): string {
  const s = String(arg);
  if (s !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Joins a program and its arguments into one safely quoted command line. */
export function command(program: string, ...args: Array<string | number>): string {
  return [program, ...args].map(quote).join(' ');
}
