/**
 * Keeps secrets out of the inventory, logs and error messages.
 * @module
 */

/** Keys whose values are secrets. Paths and variable names that point at secrets are not. */
const SECRET_KEY = /(pass(word|wd|phrase)?|token|secret|credential|api[_-]?key|private[_-]?key|auth)$/i;
const REFERENCE_KEY = /(path|file|env|_env|name|type|url)$/i;

/** Whether a key names a secret value. */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key) && !REFERENCE_KEY.test(key);
}

/** Replacement text for a secret. */
export const REDACTED = '[redacted]';

/** A deep copy with every secret-named value removed (`drop`) or masked (`mask`, the default). */
export function redact<T>(value: T, mode: 'mask' | 'drop' = 'mask'): T {
  return walk(value, mode) as T;
}

function walk(value: unknown, mode: 'mask' | 'drop'): unknown {
  if (Array.isArray(value)) return value.map((v) => walk(v, mode));
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (isSecretKey(k) && v !== undefined && v !== null && v !== '') {
        if (mode === 'mask') out[k] = REDACTED;
        continue;
      }
      out[k] = walk(v, mode);
    }
    return out;
  }
  if (typeof value === 'string' && value.includes('PRIVATE KEY-----')) return REDACTED;
  return value;
}

/**
 * Known secret strings (passwords, tokens) registered at run time, scrubbed from any text
 * before it is logged or put in an error message.
 */
const known = new Set<string>();

/**
 * Registers a secret value (a password or token your code read) so that it is scrubbed from every
 * log line and error message. Short values are ignored.
 */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 4) known.add(value);
}

/** Removes registered secrets and private key blocks from text. */
export function scrub(text: string): string {
  let out = text.replace(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g, REDACTED);
  for (const secret of known) out = out.split(secret).join(REDACTED);
  return out;
}
