// The hostbroker dashboard page. Plain JavaScript, no build step. Every value from the inventory is
// put into the page as text (textContent, attribute values), never parsed as HTML.

const $ = (id) => document.getElementById(id);

/** An element with attributes (strings only, never HTML) and children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

const state = { view: 'hosts', filter: '', owner: '', q: '', sort: 'name', order: 'asc', offset: 0, limit: 100, host: '' };
// Until /api/me answers, no action buttons (they would fail without a token that may be needed).
let me = { canAct: false };
let lastPage;

// ---- URL <-> state, so a reload or a shared link shows the same view.
function readUrl() {
  const p = new URLSearchParams(location.search);
  for (const k of ['view', 'filter', 'owner', 'q', 'sort', 'order', 'host']) if (p.get(k)) state[k] = p.get(k);
  for (const k of ['offset', 'limit']) if (/^\d+$/.test(p.get(k) ?? '')) state[k] = Number(p.get(k));
}
function writeUrl() {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) if (v !== '' && !(k === 'offset' && v === 0) && !(k === 'limit' && v === 100)) p.set(k, String(v));
  if (p.get('view') === 'hosts') p.delete('view');
  if (p.get('sort') === 'name') p.delete('sort');
  if (p.get('order') === 'asc') p.delete('order');
  history.replaceState(null, '', `${location.pathname}${p.size ? `?${p}` : ''}`);
}

// ---- API
class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}
async function api(path, body) {
  const init = body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  const res = await fetch(path, { credentials: 'same-origin', ...init });
  const data = await res.json().catch(() => undefined);
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// ---- Time
function until(iso) {
  if (!iso) return '';
  const ms = Date.parse(iso) - Date.now();
  if (Number.isNaN(ms)) return iso;
  if (ms <= 0) return 'expired';
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${String(mm).padStart(2, '0')}m`;
  return `${mm}m ${String(ss).padStart(2, '0')}s`;
}
function ago(iso) {
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (Number.isNaN(s)) return iso;
  if (s < 90) return `${s}s ago`;
  if (s < 5400) return `${Math.round(s / 60)}m ago`;
  if (s < 129600) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}
function lease(iso) {
  return h('span', { class: 'lease', 'data-expires': iso ?? '', title: iso ?? 'no lease' }, iso ? until(iso) : '—');
}
setInterval(() => {
  for (const el of document.querySelectorAll('[data-expires]')) {
    const iso = el.getAttribute('data-expires');
    if (!iso) continue;
    const text = until(iso);
    if (el.textContent !== text) el.textContent = text;
    el.classList.toggle('soon', Date.parse(iso) - Date.now() < 15 * 60_000);
  }
}, 1000);

// ---- Messages
let toastTimer;
function toast(text, kind = 'ok') {
  const el = $('toast');
  el.replaceChildren(h('span', { class: kind }, text));
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), kind === 'error' ? 10000 : 4000);
}

// ---- Rendering
const providerOf = (r) => (r.instance && r.instance !== 'default' ? `${r.provider}::${r.instance}` : r.provider);

function badges(r) {
  return [
    h('span', { class: `state state-${r.state}` }, r.state),
    r.kept ? h('span', { class: 'badge badge-kept', title: `kept ${r.kept.at}` }, `kept: ${r.kept.reason}`) : null,
    r.pooled ? h('span', { class: 'badge badge-pooled', title: `in the reuse pool since ${r.pooled.at}` }, 'pooled') : null,
    r.lastError ? h('span', { class: 'badge badge-error', title: r.lastError }, 'release failed') : null,
  ];
}

function actionButtons(r) {
  if (r.state !== 'ready' || !me.canAct) return [];
  return [
    r.leaseExpires ? h('button', { type: 'button', 'data-action': 'extend' }, 'Extend') : null,
    h('button', { type: 'button', 'data-action': 'checkin', class: 'danger' }, 'Check in'),
    r.kept ? h('button', { type: 'button', 'data-action': 'unkeep' }, 'Unkeep') : h('button', { type: 'button', 'data-action': 'keep' }, 'Keep'),
    h('button', { type: 'button', 'data-action': 'duplicate' }, 'Duplicate'),
  ].filter(Boolean);
}

/** A link's click handler that opens a host's detail in place. */
function opener(id) {
  return (e) => {
    e.preventDefault();
    void openDetail(id);
  };
}

function hostLink(r) {
  return h('a', { href: `?host=${encodeURIComponent(r.id)}`, class: 'host-link' }, r.name);
}

/** The rows shown in the list and the kept box, by id, and the one in detail: what a click acts on. */
let shown = new Map();
let detailRow;
// One listener for every host link and action button (the server's drawing has no handlers of its own).
document.addEventListener('click', (e) => {
  const target = e.target instanceof Element ? e.target.closest('a.host-link, button[data-action]') : null;
  if (!target) return;
  const r = target.closest('#detail') ? detailRow : shown.get(target.closest('[data-id]')?.getAttribute('data-id'));
  if (!r) return;
  e.preventDefault();
  if (target.matches('a')) void openDetail(r.id);
  else confirmAction(r, target.getAttribute('data-action'));
});

function row(r) {
  return h(
    'tr',
    { 'data-id': r.id, class: r.kept ? 'is-kept' : undefined },
    h('td', { class: 'name' }, hostLink(r)),
    h('td', { class: 'address' }, r.address),
    h('td', { class: 'provider' }, providerOf(r)),
    h('td', { class: 'state-cell' }, badges(r)),
    h('td', { class: 'owner' }, r.owner),
    h('td', { class: 'worker', title: r.worker ?? '' }, r.worker ?? ''),
    h('td', { class: 'lease-cell' }, lease(r.leaseExpires)),
    h('td', { class: 'deployment' }, r.deployment ?? ''),
    h('td', { class: 'actions' }, actionButtons(r)),
  );
}

/** Shows a page of hosts; `drawn`: the server drew these rows already, as {@link row} would. */
function renderHosts(page, drawn = false) {
  lastPage = page;
  shown = new Map([...page.hosts, ...page.kept].map((r) => [r.id, r]));
  if (!drawn) $('hosts').tBodies[0].replaceChildren(...page.hosts.map(row));
  const from = page.matched ? page.offset + 1 : 0;
  const to = page.offset + page.hosts.length;
  const states = Object.entries(page.counts.states)
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
  $('summary').textContent =
    `${page.matched} of ${page.total} host(s) match${states ? ` · ${states}` : ''} · ${page.counts.kept} kept · ${page.counts.pooled} pooled`;
  $('page').textContent = `${from}–${to} of ${page.matched}`;
  $('prev').disabled = page.offset === 0;
  $('next').disabled = to >= page.matched;
  for (const th of document.querySelectorAll('th[data-sort]')) {
    th.setAttribute('aria-sort', th.dataset.sort === state.sort ? (state.order === 'asc' ? 'ascending' : 'descending') : 'none');
  }
  const owner = $('owner');
  const owners = ['', ...page.owners];
  if ([...owner.options].map((o) => o.value).join('\n') !== owners.join('\n')) {
    owner.replaceChildren(...owners.map((o) => h('option', { value: o }, o || 'all owners')));
  }
  owner.value = state.owner;
  if (!drawn) renderKept(page.kept);
}

function renderKept(kept) {
  $('kept-section').hidden = kept.length === 0;
  $('kept-count').textContent = String(kept.length);
  $('kept-list').replaceChildren(
    ...kept.map((r) =>
      h(
        'li',
        { 'data-id': r.id },
        h('div', { class: 'kept-host' }, hostLink(r), h('span', { class: 'hint' }, ` ${r.owner} · ${providerOf(r)} · kept ${ago(r.kept.at)}`)),
        h('div', { class: 'kept-reason' }, r.kept.reason),
        h('div', { class: 'actions' }, actionButtons(r)),
      ),
    ),
  );
}

function renderDeployments(list) {
  $('deployments-empty').hidden = list.length > 0;
  $('deployments').replaceChildren(
    ...list.map((d) =>
      h(
        'article',
        { class: 'deployment-card', 'data-id': d.id },
        h('h3', {}, d.name),
        h('p', { class: 'hint' }, `${d.owner} · ${ago(d.createdAt)} · ${d.members.length} host(s) · ${d.id}`),
        h(
          'div',
          { class: 'groups' },
          Object.entries(d.groups).map(([g, members]) => h('span', { class: 'badge', title: members.join(', ') }, `${g} (${members.length})`)),
        ),
        h(
          'table',
          {},
          h('thead', {}, h('tr', {}, h('th', {}, 'Host'), h('th', {}, 'Role'), h('th', {}, 'Groups'), h('th', {}, 'State'))),
          h(
            'tbody',
            {},
            d.members.map((m) =>
              h(
                'tr',
                {},
                h(
                  'td',
                  {},
                  m.recordId && m.state !== 'gone' ? h('a', { href: `?host=${encodeURIComponent(m.recordId)}`, onclick: opener(m.recordId) }, m.fqdn) : m.fqdn,
                ),
                h('td', {}, m.role ?? ''),
                h('td', {}, m.groups.join(', ')),
                h('td', {}, h('span', { class: `state state-${m.state ?? 'none'}` }, m.state ?? '')),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

async function openDetail(id) {
  state.host = id;
  writeUrl();
  try {
    const d = await api(`/api/hosts/${encodeURIComponent(id)}`);
    renderDetail(d);
  } catch (error) {
    closeDetail();
    toast(error.status === 404 ? 'That host is gone (checked in).' : error.message, 'error');
  }
}
function closeDetail() {
  state.host = '';
  writeUrl();
  $('detail').hidden = true;
}
function renderDetail(d) {
  const r = d.host;
  detailRow = r;
  $('detail').hidden = false;
  $('detail').dataset.id = r.id;
  $('detail-name').textContent = r.name;
  $('detail-kept').hidden = !r.kept;
  $('detail-kept').textContent = r.kept ? `Kept ${ago(r.kept.at)}: ${r.kept.reason}` : '';
  $('detail-actions').replaceChildren(...actionButtons(r));
  const fields = [
    ['ID', r.id],
    ['Address', r.address],
    ['Provider', providerOf(r)],
    ['State', badges(r)],
    ['Owner', r.owner],
    ['Worker', r.worker],
    ['Lease', r.leaseExpires ? [lease(r.leaseExpires), ` (${r.leaseExpires})`] : 'none'],
    ['Pooled', r.pooled ? `since ${r.pooled.at}` : undefined],
    [
      'Deployment',
      d.deployment
        ? `${d.deployment.name}${d.deployment.role ? `, role ${d.deployment.role}` : ''}${d.deployment.groups.length ? `, groups ${d.deployment.groups.join(', ')}` : ''}`
        : undefined,
    ],
    [
      'Ports',
      d.record.ports
        ? Object.entries(d.record.ports)
            .map(([p, a]) => `${p} → ${a.host}:${a.port}`)
            .join(', ')
        : undefined,
    ],
    ['Created', `${r.createdAt} (${ago(r.createdAt)})`],
    ['Last error', r.lastError],
  ].filter(([, v]) => v !== undefined && v !== '');
  $('detail-fields').replaceChildren(...fields.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  $('detail-commands').replaceChildren(
    ...d.commands.map((c) =>
      h(
        'div',
        { class: 'command' },
        h('span', { class: 'hint' }, c.label),
        h('code', {}, c.command),
        h('button', { type: 'button', onclick: () => navigator.clipboard?.writeText(c.command).then(() => toast('copied')) }, 'Copy'),
      ),
    ),
  );
  $('detail-recipe').textContent = JSON.stringify(d.recipe, null, 2);
  $('detail-record').textContent = JSON.stringify(d.record, null, 2);
}

// ---- Actions, each after a confirmation
const VERBS = {
  extend: (r) => [
    `Extend the lease of ${r.name}?`,
    [
      h(
        'label',
        {},
        'New lease from now ',
        h('input', { name: 'lease', placeholder: 'e.g. 4h (empty: settings default)', pattern: '\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)' }),
      ),
    ],
  ],
  checkin: (r) => [`Check in ${r.name}? Its provider releases it (${providerOf(r)}); this cannot be undone.`, []],
  keep: (r) => [
    `Keep ${r.name} for a person to look at?`,
    [h('label', {}, 'Why ', h('input', { name: 'reason', required: true, placeholder: 'e.g. debugging the failed upgrade test' }))],
  ],
  unkeep: (r) => [`Stop keeping ${r.name}? (The reason "${r.kept?.reason ?? ''}" is cleared; the host stays checked out.)`, []],
  duplicate: (r) => [
    `Check out new host(s) with the recipe of ${r.name}?`,
    [h('label', {}, 'Copies ', h('input', { name: 'count', type: 'number', min: '1', max: '10', value: '1' }))],
  ],
};

function confirmAction(r, action) {
  const [text, fields] = VERBS[action](r);
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-fields').replaceChildren(...fields);
  $('confirm-ok').textContent = { extend: 'Extend', checkin: 'Check in', keep: 'Keep', unkeep: 'Unkeep', duplicate: 'Duplicate' }[action];
  dialog.dataset.action = action;
  dialog.returnValue = '';
  dialog.onclose = () => {
    if (dialog.returnValue !== 'ok') return;
    const body = {};
    for (const input of $('confirm-fields').querySelectorAll('input')) {
      if (input.value === '') continue;
      body[input.name] = input.type === 'number' ? Number(input.value) : input.value;
    }
    void run(r, action, body);
  };
  dialog.showModal();
}

async function run(r, action, body) {
  toast(`${action} ${r.name}…`, 'busy');
  try {
    const result = await api(`/api/hosts/${encodeURIComponent(r.id)}/${action}`, body);
    const after = result.host;
    const said = {
      extend: `extended ${r.name}: lease ends in ${until(after?.leaseExpires)}`,
      checkin: `checked in ${r.name}`,
      keep: `keeping ${r.name}`,
      unkeep: `no longer keeping ${r.name}`,
      duplicate: `made ${(result.created ?? []).map((c) => c.name).join(', ')}`,
    }[action];
    toast(said);
    if (action === 'checkin' && state.host === r.id) closeDetail();
    await refresh();
  } catch (error) {
    toast(`${action} ${r.name} failed (${error.code ?? error.status}): ${error.message}`, 'error');
  }
}

// ---- Loading
/** The inventory version of the last read (the stream's `hello` says whether it is still current). */
let seenVersion;
async function loadHosts() {
  const p = new URLSearchParams();
  for (const k of ['filter', 'owner', 'q', 'sort', 'order']) if (state[k]) p.set(k, state[k]);
  p.set('offset', String(state.offset));
  p.set('limit', String(state.limit));
  try {
    await showHosts(await api(`/api/hosts?${p}`));
  } catch (error) {
    if (error.status === 400) {
      $('filter-error').hidden = false;
      $('filter-error').textContent = error.message;
    } else throw error;
  }
}

/**
 * Shows a page of hosts (past the end: the last page instead); the first one makes the page ready.
 * `drawn`: the server drew it already.
 */
async function showHosts(page, drawn = false) {
  seenVersion = page.version;
  $('filter-error').hidden = true;
  if (page.offset > 0 && page.offset >= page.matched) {
    state.offset = Math.max(0, page.matched - state.limit);
    return loadHosts();
  }
  renderHosts(page, drawn);
  if (!document.body.dataset.ready) {
    performance.mark('hostbroker:ready');
    document.body.dataset.ready = 'true';
  }
}

async function refresh() {
  writeUrl();
  try {
    if (state.view === 'hosts') await loadHosts();
    else renderDeployments((await api('/api/deployments')).deployments);
    if (state.host && !$('detail').hidden) {
      const d = await api(`/api/hosts/${encodeURIComponent(state.host)}`).catch((e) => (e.status === 404 ? null : Promise.reject(e)));
      if (d) renderDetail(d);
      else closeDetail();
    }
  } catch (error) {
    if (error.status === 401) showSignin(error.message);
    else toast(error.message, 'error');
  }
}

// Changes arrive in bursts (a checkout writes a record several times): one re-read per burst.
let refreshTimer;
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = undefined;
    void refresh();
  }, 150);
}

// ---- Live updates: EventSource reconnects by itself; after any reconnect everything is re-read.
let source;
function connect() {
  source?.close();
  source = new EventSource('/api/events');
  source.addEventListener('hello', (e) => {
    $('offline').hidden = true;
    $('conn').textContent = 'live';
    $('conn').className = 'conn live';
    // After a reconnect (or a change since the first read) everything is read again.
    if (JSON.parse(e.data).version !== seenVersion) void refresh();
  });
  source.addEventListener('change', scheduleRefresh);
  source.onerror = () => {
    $('offline').hidden = false;
    $('conn').textContent = 'reconnecting…';
    $('conn').className = 'conn lost';
    // A refused stream (not a dropped one) is not retried by the browser.
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  };
}

// ---- Sign-in
function showSignin(why) {
  $('signin').hidden = false;
  $('signin-why').textContent = why;
}
/** Takes /api/me's answer: who is signed in, what they may do; false when reading needs a sign-in. */
function applyMe(answer) {
  me = answer;
  $('user').textContent = me.user ? `signed in as ${me.user}` : me.tokenSet ? 'read-only: sign in to act' : 'local';
  $('signout').hidden = !me.user;
  if (!me.canAct && me.tokenSet) showSignin('Actions here need the dashboard token.');
  if (me.canAct && lastPage) renderHosts(lastPage); // now with the action buttons
  return Boolean(!me.readNeedsToken || me.user);
}

/** What the server drew the page with (`{me, page}`), once: a later start (after a sign-in) reads afresh. */
function takeInitial() {
  const el = $('initial');
  if (!el) return undefined;
  el.remove();
  try {
    return JSON.parse(el.textContent);
  } catch {
    return undefined;
  }
}

$('signin').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    await api('/api/login', { token: $('token').value });
    $('token').value = '';
    $('signin').hidden = true;
    await start();
  } catch (error) {
    $('signin-why').textContent = error.message;
  }
});
$('signout').addEventListener('click', async () => {
  await api('/api/logout', {});
  location.reload();
});

// ---- Controls
let inputTimer;
function onQueryInput() {
  clearTimeout(inputTimer);
  inputTimer = setTimeout(() => {
    state.filter = $('filter').value.trim();
    state.q = $('search').value.trim();
    state.owner = $('owner').value;
    state.limit = Number($('limit').value);
    state.offset = 0;
    void refresh();
  }, 200);
}
$('query').addEventListener('input', onQueryInput);
$('query').addEventListener('submit', (e) => e.preventDefault());
$('prev').addEventListener('click', () => {
  state.offset = Math.max(0, state.offset - state.limit);
  void refresh();
});
$('next').addEventListener('click', () => {
  state.offset += state.limit;
  void refresh();
});
for (const th of document.querySelectorAll('th[data-sort]')) {
  th.tabIndex = 0;
  const sort = () => {
    state.order = state.sort === th.dataset.sort && state.order === 'asc' ? 'desc' : 'asc';
    state.sort = th.dataset.sort;
    void refresh();
  };
  th.addEventListener('click', sort);
  th.addEventListener('keydown', (e) => e.key === 'Enter' && sort());
}
for (const b of document.querySelectorAll('nav button[data-view]')) {
  b.addEventListener('click', () => showView(b.dataset.view));
}
function showView(view) {
  state.view = view;
  for (const b of document.querySelectorAll('nav button[data-view]')) b.setAttribute('aria-pressed', String(b.dataset.view === view));
  $('hosts-view').hidden = view !== 'hosts';
  $('deployments-view').hidden = view !== 'deployments';
  void refresh();
}
$('detail-close').addEventListener('click', closeDetail);
document.addEventListener('keydown', (e) => e.key === 'Escape' && !$('detail').hidden && !$('confirm').open && closeDetail());

async function start() {
  readUrl();
  $('filter').value = state.filter;
  $('search').value = state.q;
  $('limit').value = String(state.limit);
  const given = takeInitial();
  const known = given ? applyMe(given.me) : undefined;
  // The rows the server drew stay; its data is what clicks on them act on: no request.
  // Without that data, the first read does not wait for /api/me: on loopback it needs no token.
  const first = given?.page && state.view === 'hosts' ? showHosts(given.page, true) : refresh();
  try {
    if (!(known ?? applyMe(await api('/api/me')))) return showSignin('Reading this dashboard needs its token.');
  } catch (error) {
    toast(error.message, 'error');
  }
  await first;
  if (state.view !== 'hosts') showView(state.view);
  if (state.host) void openDetail(state.host);
  connect();
}
void start();
