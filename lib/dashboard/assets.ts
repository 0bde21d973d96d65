/**
 * The dashboard's page files, read once at start and served from memory: the script under a URL
 * naming its hash (cached for good, a new version gets a new URL), every file with an ETag. The
 * page template and the stylesheet go to {@link renderPage}, which inlines the stylesheet; the
 * CSP of the page allows exactly that stylesheet by its hash.
 * @module
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BrokerError } from '../errors.js';
import { SECURITY_HEADERS } from './guard.js';

/** One file served as it is. */
export interface Asset {
  body: Buffer;
  type: string;
  /** `"<sha256, base64url, 16 chars>"`, also the `?v=` of its versioned URL. */
  etag: string;
  version: string;
}

/** What the dashboard serves besides its API. */
export interface Assets {
  /** By URL path: `/assets/app.js`, `/assets/app.css`. */
  files: Map<string, Asset>;
  /** index.html, split at its `<!--hb:NAME-->` slots: literal, name, literal, name, ..., literal. */
  template: string[];
  css: string;
  /** Headers of the page itself: its CSP also allows the inlined stylesheet. */
  pageHeaders: Record<string, string>;
  /** The script's URL, with its version. */
  scriptUrl: string;
}

/** The slots index.html must have, each once. */
export const SLOTS = ['style', 'script', 'kept', 'summary', 'rows', 'pager', 'initial'] as const;

const TYPES: Record<string, string> = { 'app.js': 'text/javascript; charset=utf-8', 'app.css': 'text/css; charset=utf-8' };

/** Reads the page files beside this module (lib/dashboard/assets, or dist/lib/dashboard/assets). */
export function loadAssets(): Assets {
  const dir = fileURLToPath(new URL('./assets/', import.meta.url));
  let html: string;
  const files = new Map<string, Asset>();
  try {
    html = readFileSync(join(dir, 'index.html'), 'utf8');
    for (const [name, type] of Object.entries(TYPES)) {
      const body = readFileSync(join(dir, name));
      const version = createHash('sha256').update(body).digest('base64url').slice(0, 16);
      files.set(`/assets/${name}`, { body, type, etag: `"${version}"`, version });
    }
  } catch (error) {
    throw new BrokerError(
      `the dashboard's page files are missing from ${dir} (${(error as Error).message}); reinstall hostbroker, or run \`npm run build\` in a checkout.`,
    );
  }
  const template = html.split(/<!--hb:([a-z]+)-->/);
  const names = template.filter((_, i) => i % 2 === 1);
  if (names.join() !== SLOTS.join())
    throw new BrokerError(`${join(dir, 'index.html')} has the slots ${names.join(', ')}, not ${SLOTS.join(', ')}; reinstall hostbroker.`);
  const css = files.get('/assets/app.css')!.body.toString('utf8');
  const cssHash = createHash('sha256').update(css).digest('base64');
  const csp = SECURITY_HEADERS['content-security-policy']!.replace("style-src 'self'", `style-src 'self' 'sha256-${cssHash}'`);
  const script = files.get('/assets/app.js')!;
  return { files, template, css, pageHeaders: { ...SECURITY_HEADERS, 'content-security-policy': csp }, scriptUrl: `/assets/app.js?v=${script.version}` };
}

/** Answers with one file: 304 when the browser has it, cached for good under its versioned URL. */
export function sendAsset(req: IncomingMessage, res: ServerResponse, asset: Asset, url: URL): void {
  const forever = url.searchParams.get('v') === asset.version;
  const headers = {
    ...SECURITY_HEADERS,
    'content-type': asset.type,
    etag: asset.etag,
    'cache-control': forever ? 'public, max-age=31536000, immutable' : 'no-cache',
  };
  if (req.headers['if-none-match'] === asset.etag) return void res.writeHead(304, headers).end();
  res.writeHead(200, { ...headers, 'content-length': String(asset.body.length) });
  res.end(req.method === 'HEAD' ? undefined : asset.body);
}
