/**
 * Who may use the dashboard: named tokens kept (as SHA-256 hashes, mode 0600) in
 * `<broker directory>/dashboard-tokens.json`, one-time login codes, and the sessions their cookie
 * names. A token is printed once when it is made; the file never holds it.
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { lazySchema, z } from '../zod.js';
import { writeAtomic } from '../atomic-file.js';
import { SettingsError, UserInputError } from '../errors.js';
import { registerSecret } from '../secrets.js';

/** The cookie a login sets. */
export const SESSION_COOKIE = 'hostbroker_session';
/** How long a one-time login code may wait to be used. */
const CODE_TTL_MS = 10 * 60_000;
/** How long a browser session lasts. */
const SESSION_TTL_MS = 12 * 3_600_000;

const TokenFile = lazySchema(() =>
  z.object({
    version: z.literal(1),
    tokens: z.array(z.object({ name: z.string().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/), createdAt: z.string() })),
  }),
);
type TokenFile = z.infer<typeof TokenFile>;

/** Where the token hashes live. */
export function tokenFilePath(directory: string): string {
  return join(directory, 'dashboard-tokens.json');
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

function readTokenFile(path: string): TokenFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, tokens: [] };
    throw error;
  }
  const parsed = TokenFile.safeParse(JSON.parse(text));
  if (!parsed.success) throw new SettingsError(`${path} is not a dashboard token file; move it away and run \`hostbroker serve --new-token NAME\`.`);
  return parsed.data;
}

/** Checks tokens, login codes and sessions for one running dashboard. */
export class DashboardAuth {
  readonly #path: string;
  #tokens: TokenFile['tokens'];
  readonly #codes = new Map<string, { name: string; expires: number }>();
  readonly #sessions = new Map<string, { name: string; expires: number }>();

  constructor(directory: string) {
    this.#path = tokenFilePath(directory);
    this.#tokens = readTokenFile(this.#path).tokens;
  }

  /** Whether any token is set (then actions need one, even on loopback). */
  get enabled(): boolean {
    return this.#tokens.length > 0;
  }

  /** Makes a token for `name` (replacing one of that name), stores its hash, returns it: the only time it is seen. */
  async createToken(name: string): Promise<string> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]*$/.test(name)) throw new UserInputError(`token name ${JSON.stringify(name)}: use letters, digits, ., _, @ and -.`);
    const token = `hbd_${randomBytes(24).toString('base64url')}`;
    registerSecret(token);
    this.#tokens = [...this.#tokens.filter((t) => t.name !== name), { name, sha256: sha256(token), createdAt: new Date().toISOString() }];
    await mkdir(dirname(this.#path), { recursive: true, mode: 0o700 });
    await writeAtomic(this.#path, `${JSON.stringify({ version: 1, tokens: this.#tokens }, null, 2)}\n`);
    return token;
  }

  /** The name of the token, or undefined. Compared in constant time. */
  identify(token: string): string | undefined {
    const hash = Buffer.from(sha256(token), 'hex');
    return this.#tokens.find((t) => timingSafeEqual(Buffer.from(t.sha256, 'hex'), hash))?.name;
  }

  /** A one-time code for `/login?code=...` that signs a browser in as `name`. */
  loginCode(name: string): string {
    const code = randomBytes(24).toString('base64url');
    registerSecret(code);
    this.#codes.set(code, { name, expires: Date.now() + CODE_TTL_MS });
    return code;
  }

  /** Uses up a login code; returns a new session id, or undefined when the code is unknown, used or old. */
  redeem(code: string): string | undefined {
    const entry = this.#codes.get(code);
    this.#codes.delete(code);
    if (!entry || entry.expires < Date.now()) return undefined;
    return this.startSession(entry.name);
  }

  /** A new session for a token holder (after `/api/login` with the token). */
  startSession(name: string): string {
    const id = randomBytes(24).toString('base64url');
    registerSecret(id);
    this.#sessions.set(id, { name, expires: Date.now() + SESSION_TTL_MS });
    return id;
  }

  /** Ends a session (logout). */
  endSession(id: string): void {
    this.#sessions.delete(id);
  }

  /** Who a request is: from its bearer token or its session cookie; undefined when neither is valid. */
  whoIs(headers: { authorization?: string | undefined; cookie?: string | undefined }): string | undefined {
    const bearer = /^Bearer\s+(\S+)$/i.exec(headers.authorization ?? '')?.[1];
    if (bearer) return this.identify(bearer);
    const session = sessionIdOf(headers.cookie);
    if (!session) return undefined;
    const entry = this.#sessions.get(session);
    if (!entry || entry.expires < Date.now()) return undefined;
    return entry.name;
  }
}

/** The session id in a Cookie header. */
export function sessionIdOf(cookie: string | undefined): string | undefined {
  for (const part of (cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === SESSION_COOKIE) return v.join('=');
  }
  return undefined;
}

/** The Set-Cookie value of a session: not readable by scripts, never sent cross-site. */
export function sessionCookie(id: string, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${SESSION_TTL_MS / 1000}${secure ? '; Secure' : ''}`;
}
