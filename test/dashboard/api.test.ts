// The dashboard's JSON API and its guards, over HTTP (the browser tests drive the page itself).
import { createHash } from 'node:crypto';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Broker } from '../../lib/broker/index.js';
import { tokenFilePath } from '../../lib/dashboard/auth.js';
import { type Dashboard, startDashboard } from '../../lib/dashboard/server.js';
import { addRecords, call, eventually, fakeRecord, newBroker, post } from './helpers.js';

const open: Array<Dashboard | Broker> = [];
const directories: string[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
  for (const d of directories.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup(options: Parameters<typeof startDashboard>[1] = {}): Promise<{ broker: Broker; dashboard: Dashboard; base: string }> {
  const broker = await newBroker();
  open.push(broker);
  directories.push(broker.directory);
  const dashboard = await startDashboard(broker, { port: 0, ...options });
  open.push(dashboard);
  const port = new URL(dashboard.url).port;
  return { broker, dashboard, base: `http://127.0.0.1:${port}/` };
}

async function auditLines(broker: Broker): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(join(broker.directory, 'dashboard-audit.log'), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

describe('dashboard API', () => {
  it('lists hosts filtered in the seed syntax, by owner and by search text, sorted and paged, secrets removed', async () => {
    const { broker, base } = await setup();
    const web = Array.from({ length: 20 }, (_, i) => fakeRecord(`web-${String(i).padStart(2, '0')}`, { owner: 'alice' }));
    const db = Array.from({ length: 10 }, (_, i) => fakeRecord(`db-${i}`, { owner: 'bob' }));
    const secret = fakeRecord('vault', {
      owner: 'carol',
      recipe: { provider: 'static', args: { password: 'hunter2-secret-value' } },
      data: { apiToken: 'tok-secret-value', note: '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----' },
      kept: { reason: 'upgrade test failed', at: new Date().toISOString() },
    });
    await addRecords(broker, [...web, ...db, secret]);

    const all = await eventually(async () => {
      const res = await call(`${base}api/hosts?limit=1000`);
      expect(res.body.total).toBe(31);
      return res;
    });
    expect(all.body).toMatchObject({ total: 31, matched: 31, owners: ['alice', 'bob', 'carol'], counts: { kept: 1, states: { ready: 31 } } });
    expect(all.body.kept).toEqual([expect.objectContaining({ name: 'vault', kept: expect.objectContaining({ reason: 'upgrade test failed' }) })]);

    expect((await call(`${base}api/hosts?filter=${encodeURIComponent('name{web,name!}5')}`)).body.matched).toBe(18);
    expect((await call(`${base}api/hosts?owner=bob`)).body.hosts.map((h: { name: string }) => h.name)).toEqual(db.map((r) => r.name));
    expect((await call(`${base}api/hosts?q=UPGRADE`)).body.hosts.map((h: { name: string }) => h.name)).toEqual(['vault']);
    const page = await call(`${base}api/hosts?filter=${encodeURIComponent('owner=alice')}&sort=name&order=desc&offset=5&limit=3`);
    expect(page.body).toMatchObject({ matched: 20, offset: 5 });
    expect(page.body.hosts.map((h: { name: string }) => h.name)).toEqual(['web-14', 'web-13', 'web-12']);

    const detail = await call(`${base}api/hosts/${secret.id}`);
    expect(detail.status).toBe(200);
    const text = JSON.stringify(detail.body);
    for (const s of ['hunter2-secret-value', 'tok-secret-value', 'PRIVATE KEY']) expect(text).not.toContain(s);
    expect(detail.body.recipe.args.password).toBe('[redacted]');
    expect(detail.body.commands.map((c: { command: string }) => c.command)).toContain(`hostbroker ssh --directory ${broker.directory} vault`);

    const bad = await call(`${base}api/hosts?filter=${encodeURIComponent('no operator')}`);
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('USER_INPUT');
    expect((await call(`${base}api/hosts?sort=colour`)).body.error.code).toBe('USER_INPUT');
    expect((await call(`${base}api/hosts/hb-nope`)).status).toBe(404);
  });

  it('changes state only on POST, from its own origin, with JSON; refuses a rebinding Host; sends a CSP', async () => {
    const { broker, base } = await setup();
    const [record] = [fakeRecord('web-1')];
    await addRecords(broker, [record!]);
    const id = record!.id;
    await eventually(async () => expect((await call(`${base}api/hosts/${id}`)).status).toBe(200));
    const notKept = async () => expect((await broker.find(id))?.kept).toBeUndefined();

    const get = await call(`${base}api/hosts/${id}/keep?reason=x`);
    expect(get.status).toBe(405);
    await notKept();
    const foreign = await post(base, `/api/hosts/${id}/keep`, { reason: 'x' }, { origin: 'http://evil.example' });
    expect([foreign.status, foreign.body.error.code]).toEqual([403, 'FORBIDDEN_ORIGIN']);
    const crossSite = await call(`${base}api/hosts/${id}/keep`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'sec-fetch-site': 'cross-site' },
      body: '{"reason":"x"}',
    });
    expect([crossSite.status, crossSite.body.error.code]).toEqual([403, 'FORBIDDEN_ORIGIN']);
    const form = await post(base, `/api/hosts/${id}/keep`, 'reason=x', { 'content-type': 'application/x-www-form-urlencoded' });
    expect([form.status, form.body.error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    const port = new URL(base).port;
    const rebound = await call(`${base}api/hosts`, { headers: { host: `attacker.example:${port}` } });
    expect([rebound.status, rebound.body.error.code]).toEqual([403, 'FORBIDDEN_HOST']);
    await notKept();

    const noReason = await post(base, `/api/hosts/${id}/keep`, {});
    expect([noReason.status, noReason.body.error.code]).toEqual([400, 'USER_INPUT']);
    const kept = await post(base, `/api/hosts/${id}/keep`, { reason: 'looking at the logs' });
    expect(kept.status).toBe(200);
    expect(kept.body.host.kept.reason).toBe('looking at the logs');
    expect((await broker.find(id))?.kept?.reason).toBe('looking at the logs');
    const unkept = await post(base, `/api/hosts/${id}/unkeep`, {});
    expect(unkept.status).toBe(200);
    await notKept();
    expect((await auditLines(broker)).map((l) => [l.who, l.action, l.host, l.ok])).toEqual([
      ['local', 'keep', 'web-1', false],
      ['local', 'keep', 'web-1', true],
      ['local', 'unkeep', 'web-1', true],
    ]);

    for (const path of ['', 'api/hosts']) {
      const res = await call(`${base}${path}`);
      expect(res.headers['content-security-policy']).toContain("script-src 'self'");
      expect(res.headers['x-frame-options']).toBe('DENY');
    }
  });

  it('with a token set, refuses actions without it even on loopback, and knows who acted', async () => {
    const { broker, dashboard, base } = await setup({ token: true, tokenName: 'alice' });
    const token = dashboard.newToken!.token;
    expect(dashboard.newToken!.name).toBe('alice');
    const file = tokenFilePath(broker.directory);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).not.toContain(token);
    const record = fakeRecord('web-1');
    await addRecords(broker, [record]);
    const path = `/api/hosts/${record.id}/keep`;
    await eventually(async () => expect((await call(`${base}api/hosts/${record.id}`)).status).toBe(200));

    expect((await call(`${base}api/hosts`)).status).toBe(200); // reading on loopback needs none
    for (const headers of [{}, { authorization: 'Bearer hbd_wrong' }] as Record<string, string>[]) {
      const refused = await post(base, path, { reason: 'x' }, headers);
      expect([refused.status, refused.body.error.code]).toEqual([401, 'UNAUTHORIZED']);
    }
    expect((await broker.find(record.id))?.kept).toBeUndefined();
    expect((await post(base, path, { reason: 'by bearer' }, { authorization: `Bearer ${token}` })).status).toBe(200);

    // The one-time login link: a cookie scripts cannot read, never sent cross-site; a second use fails.
    const link = dashboard.loginUrl('alice').replace(/^http:\/\/[^/]+\//, base);
    const login = await call(link);
    expect(login.status).toBe(303);
    const cookie = String(login.headers['set-cookie']);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect((await call(link)).status).toBe(401);
    const session = cookie.split(';')[0]!;
    expect((await call(`${base}api/me`, { headers: { cookie: session } })).body).toMatchObject({ user: 'alice', canAct: true });
    expect((await post(base, `/api/hosts/${record.id}/unkeep`, {}, { cookie: session })).status).toBe(200);
    await post(base, '/api/logout', {}, { cookie: session });
    expect((await post(base, `/api/hosts/${record.id}/unkeep`, {}, { cookie: session })).status).toBe(401);
    // The sign-in form: the token for a cookie.
    expect((await post(base, '/api/login', { token: 'hbd_wrong' })).body.error.code).toBe('UNAUTHORIZED');
    expect((await post(base, '/api/login', { token })).body).toEqual({ user: 'alice' });

    expect((await auditLines(broker)).filter((l) => l.ok).map((l) => [l.who, l.action])).toEqual([
      ['alice', 'keep'],
      ['alice', 'unkeep'],
    ]);
    // A restart keeps the token (no new one is made or printed).
    const again = await startDashboard(broker, { port: 0, token: true });
    open.push(again);
    expect(again.newToken).toBeUndefined();
    expect(again.auth.identify(token)).toBe('alice');
  });

  it('bound beyond loopback, makes a token and needs it for reading too', async () => {
    const { broker, dashboard, base } = await setup({ host: '0.0.0.0' });
    const token = dashboard.newToken!.token;
    const refused = await call(`${base}api/hosts`);
    expect([refused.status, refused.body.error.code]).toEqual([401, 'UNAUTHORIZED']);
    expect((await call(`${base}api/events`)).status).toBe(401);
    const me = await call(`${base}api/me`);
    expect(me.body).toEqual({ user: null, tokenSet: true, readNeedsToken: true, canAct: false });
    expect((await call(`${base}api/hosts`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    // The page comes without a token, and then holds no data: no row, no record field, no directory.
    const record = fakeRecord('secret-project-box');
    await addRecords(broker, [record]);
    await eventually(async () => expect((await call(`${base}api/hosts`, { headers: { authorization: `Bearer ${token}` } })).body.total).toBe(1));
    const bare = await call(base);
    expect(bare.status).toBe(200);
    for (const leak of [record.name, record.id, broker.directory]) expect(bare.body).not.toContain(leak);
    expect(bare.body).not.toContain('<tr data-id=');
    const signedIn = await call(base, { headers: { authorization: `Bearer ${token}` } });
    expect(signedIn.body).toContain(`<tr data-id="${record.id}">`);
  });

  it('sends its page with the first rows drawn, the stylesheet inlined under its CSP hash, and the script cached by version', async () => {
    const { broker, base } = await setup();
    const records = [fakeRecord('web-2'), fakeRecord('web-1', { kept: { reason: 'look at me', at: new Date().toISOString() } })];
    await addRecords(broker, records);
    await eventually(async () => expect((await call(`${base}api/hosts`)).body.total).toBe(2));
    const page = await call(`${base}?sort=name&order=desc`);
    expect(page.headers['cache-control']).toBe('no-store');
    const html = String(page.body);
    // Rows in the order asked for, the kept host up top too, and the data for the script to take over.
    expect([...html.matchAll(/<tr data-id="([^"]+)"/g)].map((m) => m[1])).toEqual([records[0]!.id, records[1]!.id]);
    expect(html).toMatch(new RegExp(`<li data-id="${records[1]!.id}">`));
    const initial = JSON.parse(/<script type="application\/json" id="initial">([^<]*)<\/script>/.exec(html)![1]!);
    expect(initial.page).toMatchObject({ total: 2, matched: 2, version: expect.any(Number) });
    expect(initial.me).toMatchObject({ canAct: true, user: null });
    // The only inline style is the one the CSP names by hash; scripts stay 'self' only.
    const css = /<style>([\s\S]*?)<\/style>/.exec(html)![1]!;
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain(`style-src 'self' 'sha256-${createHash('sha256').update(css).digest('base64')}'`);
    expect(csp).toMatch(/script-src 'self';/);

    const src = /<script type="module" src="([^"]+)">/.exec(html)![1]!;
    expect(src).toMatch(/^\/assets\/app\.js\?v=[\w-]{16}$/);
    const script = await call(`${base}${src.slice(1)}`);
    expect([script.status, script.headers['cache-control']]).toEqual([200, 'public, max-age=31536000, immutable']);
    expect(String(script.body)).toContain('takeInitial');
    const again = await call(`${base}assets/app.js`, { headers: { 'if-none-match': String(script.headers.etag) } });
    expect([again.status, again.headers['cache-control'], again.body]).toEqual([304, 'no-cache', '']);

    // A query the API refuses draws no rows: the page asks the API, which says what is wrong.
    const bad = await call(`${base}?filter=${encodeURIComponent('no operator')}`);
    expect(bad.status).toBe(200);
    expect(String(bad.body)).not.toContain('<tr data-id=');
  });
});

describe('dashboard start', () => {
  it('says which port is taken instead of failing with a bare EADDRINUSE', async () => {
    const { broker, dashboard } = await setup();
    const port = Number(new URL(dashboard.url).port);
    await expect(startDashboard(broker, { port })).rejects.toMatchObject({
      code: 'USER_INPUT',
      message: expect.stringContaining(`127.0.0.1:${port} (EADDRINUSE)`),
    });
  });
});
