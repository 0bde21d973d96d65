/**
 * The dashboard page as the server sends it: the stylesheet inlined, the first page of host rows,
 * the kept hosts and the summary already drawn, and the data they were drawn from embedded for
 * app.js to take over, so the first render needs no other request. The markup is app.js's own,
 * made the same way: strings are always text (escaped), never markup (test/dashboard/browser.test.ts
 * compares the two).
 * @module
 */
import type { Assets } from './assets.js';
import { jsonText } from './guard.js';
import type { HostPage, HostRow } from './views.js';

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** `value` as HTML text or a quoted attribute value. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** Markup made here (anything else given as a child is text). */
class Html {
  constructor(readonly html: string) {}
}
type Child = string | Html | null | undefined | false | Child[];

/** app.js's `h()`, as a string: attributes (undefined, null, false left out; true empty), children. */
function h(tag: string, attrs: Record<string, string | boolean | undefined>, ...children: Child[]): Html {
  let out = `<${tag}`;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    out += v === true ? ` ${k}=""` : ` ${k}="${escapeHtml(v)}"`;
  }
  return new Html(`${out}>${html(children)}</${tag}>`);
}

function html(children: Child[]): string {
  let out = '';
  for (const c of children.flat(Infinity as 1) as Child[]) {
    if (c === null || c === undefined || c === false) continue;
    out += c instanceof Html ? c.html : escapeHtml(String(c));
  }
  return out;
}

/** app.js's `until()`: what is left of a lease. */
export function until(iso: string, now: number): string {
  const ms = Date.parse(iso) - now;
  if (Number.isNaN(ms)) return iso;
  if (ms <= 0) return 'expired';
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${String(mm).padStart(2, '0')}m`;
  return `${mm}m ${String(s % 60).padStart(2, '0')}s`;
}

/** app.js's `ago()`. */
function ago(iso: string, now: number): string {
  const s = Math.round((now - Date.parse(iso)) / 1000);
  if (Number.isNaN(s)) return iso;
  if (s < 90) return `${s}s ago`;
  if (s < 5400) return `${Math.round(s / 60)}m ago`;
  if (s < 129600) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

const providerOf = (r: HostRow): string => (r.instance && r.instance !== 'default' ? `${r.provider}::${r.instance}` : r.provider);

function badges(r: HostRow): Child[] {
  return [
    h('span', { class: `state state-${r.state}` }, r.state),
    r.kept ? h('span', { class: 'badge badge-kept', title: `kept ${r.kept.at}` }, `kept: ${r.kept.reason}`) : null,
    r.pooled ? h('span', { class: 'badge badge-pooled', title: `in the reuse pool since ${r.pooled.at}` }, 'pooled') : null,
    r.lastError ? h('span', { class: 'badge badge-error', title: r.lastError }, 'release failed') : null,
  ];
}

function actionButtons(r: HostRow, canAct: boolean): Child[] {
  if (r.state !== 'ready' || !canAct) return [];
  const button = (action: string, label: string, extra: Record<string, string> = {}) => h('button', { type: 'button', 'data-action': action, ...extra }, label);
  return [
    r.leaseExpires ? button('extend', 'Extend') : null,
    button('checkin', 'Check in', { class: 'danger' }),
    r.kept ? button('unkeep', 'Unkeep') : button('keep', 'Keep'),
    button('duplicate', 'Duplicate'),
  ];
}

const hostLink = (r: HostRow): Html => h('a', { href: `?host=${encodeURIComponent(r.id)}`, class: 'host-link' }, r.name);

/** One row of the host table, as app.js's `row()` makes it. */
export function rowHtml(r: HostRow, canAct: boolean, now: number): string {
  return h(
    'tr',
    { 'data-id': r.id, class: r.kept ? 'is-kept' : undefined },
    h('td', { class: 'name' }, hostLink(r)),
    h('td', { class: 'address' }, r.address),
    h('td', { class: 'provider' }, providerOf(r)),
    h('td', { class: 'state-cell' }, badges(r)),
    h('td', { class: 'owner' }, r.owner),
    h('td', { class: 'worker', title: r.worker ?? '' }, r.worker ?? ''),
    h(
      'td',
      { class: 'lease-cell' },
      h(
        'span',
        { class: 'lease', 'data-expires': r.leaseExpires ?? '', title: r.leaseExpires ?? 'no lease' },
        r.leaseExpires ? until(r.leaseExpires, now) : '—',
      ),
    ),
    h('td', { class: 'deployment' }, r.deployment ?? ''),
    h('td', { class: 'actions' }, actionButtons(r, canAct)),
  ).html;
}

function keptHtml(kept: HostRow[], canAct: boolean, now: number): string {
  return h(
    'section',
    { id: 'kept-section', class: 'kept', hidden: kept.length === 0, 'aria-labelledby': 'kept-title' },
    h('h2', { id: 'kept-title' }, 'Kept hosts ', h('span', { id: 'kept-count', class: 'count' }, String(kept.length))),
    h('p', { class: 'hint' }, 'Kept on purpose (a failed test, a person looking): check them in when done.'),
    h(
      'ul',
      { id: 'kept-list' },
      kept.map((r) =>
        h(
          'li',
          { 'data-id': r.id },
          h('div', { class: 'kept-host' }, hostLink(r), h('span', { class: 'hint' }, ` ${r.owner} · ${providerOf(r)} · kept ${ago(r.kept!.at, now)}`)),
          h('div', { class: 'kept-reason' }, r.kept!.reason),
          h('div', { class: 'actions' }, actionButtons(r, canAct)),
        ),
      ),
    ),
  ).html;
}

function summary(page: HostPage): string {
  const states = Object.entries(page.counts.states)
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
  return `${page.matched} of ${page.total} host(s) match${states ? ` · ${states}` : ''} · ${page.counts.kept} kept · ${page.counts.pooled} pooled`;
}

function pager(page: HostPage | undefined): string {
  const to = page ? page.offset + page.hosts.length : 0;
  return html([
    h('button', { type: 'button', id: 'prev', disabled: !page || page.offset === 0 }, '‹ Prev'),
    ' ',
    h('span', { id: 'page' }, page ? `${page.matched ? page.offset + 1 : 0}–${to} of ${page.matched}` : ''),
    ' ',
    h('button', { type: 'button', id: 'next', disabled: !page || to >= page.matched }, 'Next ›'),
  ]);
}

/** What the page is drawn with: the first page of hosts (none when reading needs a sign-in first), and /api/me's answer. */
export interface PageData {
  page: (HostPage & { version: number }) | undefined;
  me: Record<string, unknown> & { canAct: boolean };
}

/** The page, `now` being the time its lease countdowns start from. */
export function renderPage(assets: Assets, data: PageData, now = Date.now()): string {
  const { page, me } = data;
  // `<` escaped: the data cannot end its script element, whatever a record holds.
  const initial = jsonText(data).replace(/</g, '\\u003c');
  const slots: Record<string, string> = {
    style: `<style>${assets.css}</style>`,
    script: h('script', { type: 'module', src: assets.scriptUrl }).html,
    kept: keptHtml(page?.kept ?? [], me.canAct, now),
    summary: page ? escapeHtml(summary(page)) : '',
    rows: page ? page.hosts.map((r) => rowHtml(r, me.canAct, now)).join('') : '',
    pager: pager(page),
    initial: `<script type="application/json" id="initial">${initial}</script>`,
  };
  return assets.template.map((part, i) => (i % 2 ? slots[part]! : part)).join('');
}
