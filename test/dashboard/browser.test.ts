// The dashboard in a real browser (Debian's chromium through playwright-core): hosts checked out
// with the library appear live, filters, actions from the page that really reach the provider,
// kept hosts, hostile names, a lost connection, deployments, and the token. Screenshots of the
// main views go to docs/images/ for the README.
import { createServer, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Host } from '../../hosts/host.js';
import type { Broker } from '../../lib/broker/index.js';
import { type Dashboard, startDashboard } from '../../lib/dashboard/server.js';
import { isProcessAlive } from '../../lib/identity.js';
import { chromiumMissing, launchChromium } from './chromium.js';
import { addRecords, eventually, fakeRecord, newBroker } from './helpers.js';

const skip = chromiumMissing();
// The README's screenshots are refreshed with UPDATE_SCREENSHOTS=1 (else they go to a temp folder,
// so a test run leaves the tree clean).
const IMAGES = process.env.UPDATE_SCREENSHOTS === '1' ? resolve(import.meta.dirname, '../../docs/images') : join(tmpdir(), 'hostbroker-dashboard-screenshots');

/** The rows the page shows now, as [name, lease text] pairs. */
function rows(page: Page): Promise<string[][]> {
  return page.$$eval('#hosts tbody tr', (trs) => trs.map((tr) => [tr.querySelector('.name')!.textContent!, tr.querySelector('.lease')!.textContent!]));
}

/** Waits until the page shows exactly these host names, in this order. */
function namesAre(page: Page, names: string[]): Promise<unknown> {
  // Functions, not strings: the page's CSP forbids eval, and string predicates need it.
  return page.waitForFunction(
    (want) => [...(globalThis as any).document.querySelectorAll('#hosts tbody tr .name')].map((e: any) => e.textContent).join('\n') === want,
    names.join('\n'),
  );
}

/** Waits until the first element matching `selector` has text matching `pattern`. */
function textIs(page: Page, selector: string, pattern: RegExp): Promise<unknown> {
  return page.waitForFunction(([sel, source]) => new RegExp(source).test((globalThis as any).document.querySelector(sel)?.textContent ?? ''), [
    selector,
    pattern.source,
  ] as const);
}

/** Clicks an action button of a host's row and confirms it, filling the dialog's fields. */
async function act(page: Page, id: string, action: string, fields: Record<string, string> = {}): Promise<void> {
  await page.click(`#hosts tr[data-id="${id}"] button[data-action="${action}"]`);
  await page.waitForSelector('#confirm[open]');
  for (const [name, value] of Object.entries(fields)) await page.fill(`#confirm input[name="${name}"]`, value);
  await page.click('#confirm-ok');
}

async function shot(page: Page, name: string): Promise<void> {
  await mkdir(IMAGES, { recursive: true });
  await page.screenshot({ path: join(IMAGES, name), animations: 'disabled' }); // finished transitions: no half-faded toast
}

describe.skipIf(skip)(`dashboard in chromium${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let browser: Browser;
  let directory: string;
  let lib: Broker; // the test suite's own Broker, checking hosts out as a user's code does
  let served: Broker; // the one `hostbroker serve` would make, over the same directory
  let dashboard: Dashboard;
  let page: Page;
  let port: number;
  const hosts: Record<string, Host> = {};
  const pageErrors: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
    directory = await mkdtemp(join(tmpdir(), 'hb-dash-browser-'));
    lib = await newBroker(directory);
    served = await newBroker(directory);
    dashboard = await startDashboard(served, { port: 0 });
    port = Number(new URL(dashboard.url).port);
    page = await browser.newPage({ viewport: { width: 1360, height: 760 } });
    page.on('pageerror', (e) => pageErrors.push(e.message));
  });

  afterAll(async () => {
    expect(pageErrors).toEqual([]);
    await browser?.close();
    await lib?.forget({ filter: 'provider=static' });
    await lib?.checkin({ all: true });
    await dashboard?.close();
    await served?.close();
    await lib?.close();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  it('shows hosts the library checks out as they appear, and filters and searches them', async () => {
    await page.goto(dashboard.url);
    await page.waitForSelector('body[data-ready]');
    await page.waitForSelector('#conn.live');
    expect(await rows(page)).toEqual([]);

    const [web, db] = await Promise.all([
      lib.checkout({ provider: 'local', name: 'web-a', lease: '1h' }),
      lib.checkout({ provider: 'local', name: 'db-a', lease: '1h' }),
    ]);
    hosts.web = web;
    hosts.db = db;
    await page.waitForSelector(`#hosts tr[data-id="${web.id}"]`);
    await page.waitForSelector(`#hosts tr[data-id="${db.id}"]`);
    // Rows may show up while still provisioning (the record is written first); then they turn ready.
    for (const h of [web, db]) await textIs(page, `#hosts tr[data-id="${h.id}"] .state`, /^ready$/);
    const cells = await page.$eval(`#hosts tr[data-id="${web.id}"]`, (tr) => [...tr.querySelectorAll('td')].slice(0, 5).map((td) => td.textContent));
    expect(cells).toEqual([
      'web-a',
      `${web.record.connection?.kind === 'ssh' ? `${web.record.connection.username}@127.0.0.1:${web.record.connection.port}` : ''}`,
      'local',
      'ready',
      lib.owner,
    ]);
    expect((await rows(page)).map(([, lease]) => lease)).toEqual([expect.stringMatching(/^59m \d\ds$/), expect.stringMatching(/^59m \d\ds$/)]);

    await page.fill('#filter', 'name<web');
    await namesAre(page, ['web-a']);
    await page.fill('#filter', 'web');
    await page.waitForSelector('#filter-error:not([hidden])');
    expect(await page.textContent('#filter-error')).toContain('filter');
    await page.fill('#filter', '');
    await page.fill('#search', 'DB-');
    await namesAre(page, ['db-a']);
    await page.fill('#search', '');
    await namesAre(page, ['db-a', 'web-a']);
    await page.click('th[data-sort="name"]'); // now descending
    await namesAre(page, ['web-a', 'db-a']);
  });

  it('extends a lease from the page and shows the new one', async () => {
    const { web } = hosts;
    const before = Date.parse((await lib.find(web!.id))!.leaseExpires!);
    await act(page, web!.id, 'extend', { lease: '5h' });
    await textIs(page, `#hosts tr[data-id="${web!.id}"] .lease`, /^4h 59m$/);
    const after = Date.parse((await lib.find(web!.id))!.leaseExpires!);
    expect(after - before).toBeGreaterThan(3.9 * 3_600_000);
  });

  it('checks a host in from the page, and the local provider really releases it', async () => {
    const { db } = hosts;
    const folder = join(directory, 'local-hosts', db!.id);
    const pid = Number(await readFile(join(folder, 'server.pid'), 'utf8'));
    expect(isProcessAlive(pid)).toBe(true);
    await act(page, db!.id, 'checkin');
    await page.waitForSelector(`#hosts tr[data-id="${db!.id}"]`, { state: 'detached' });
    expect(await lib.find(db!.id)).toBeUndefined();
    expect(existsSync(folder)).toBe(false);
    await eventually(async () => expect(isProcessAlive(pid)).toBe(false));
  });

  it('shows a kept host with its reason, up top and in its detail with the commands that reach it', async () => {
    const { web } = hosts;
    const reason = 'upgrade test failed: see /var/log/upgrade.log';
    await lib.keep(web!, reason);
    await page.waitForSelector('#kept-section:not([hidden])');
    expect(await page.textContent(`#kept-list li[data-id="${web!.id}"] .kept-reason`)).toBe(reason);
    expect(await page.textContent(`#hosts tr[data-id="${web!.id}"] .badge-kept`)).toBe(`kept: ${reason}`);

    await page.click(`#hosts tr[data-id="${web!.id}"] .host-link`);
    await page.waitForSelector('#detail:not([hidden])');
    expect(await page.textContent('#detail-kept')).toContain(reason);
    const commands = await page.$$eval('#detail-commands code', (els) => els.map((e) => e.textContent));
    expect(commands[0]).toBe(`hostbroker ssh --directory ${directory} web-a`);
    expect(commands[1]).toContain(`UserKnownHostsFile=${join(directory, 'known_hosts')}`);
    expect(JSON.parse((await page.textContent('#detail-recipe'))!)).toMatchObject({ provider: 'local', args: { name: 'web-a' } });
    await shot(page, 'dashboard-detail.png');
    await page.click('#detail-close');
  });

  it('renders hostile host names and reasons as text', async () => {
    const names = ['<script>window.__pwned=1</script>', '<img src=x onerror="window.__pwned=2">'];
    const records = names.map((name) => fakeRecord(name, { kept: { reason: '<b onmouseover="window.__pwned=3">bold</b>', at: new Date().toISOString() } }));
    await addRecords(lib, records);
    for (const r of records) await page.waitForSelector(`#hosts tr[data-id="${r.id}"]`);
    for (const r of records) expect(await page.textContent(`#hosts tr[data-id="${r.id}"] .name`)).toBe(r.name);
    expect(await page.$$('#hosts tbody img, #hosts tbody script, #kept-list img, #kept-list b')).toEqual([]);
    await page.click(`#hosts tr[data-id="${records[1]!.id}"] .host-link`);
    await page.waitForSelector('#detail:not([hidden])');
    expect(await page.textContent('#detail-name')).toBe(names[1]);
    expect(await page.evaluate(() => (globalThis as any).__pwned)).toBeUndefined();
    await page.click('#detail-close');
    await lib.forget(records);
    for (const r of records) await page.waitForSelector(`#hosts tr[data-id="${r.id}"]`, { state: 'detached' });
  });

  it('draws the first rows on the server exactly as the page draws them, hostile fields as text', async () => {
    const hostile = '<img src=x onerror="window.__pwned=4">';
    const at = new Date(Date.now() - 3_600_000).toISOString(); // "1h ago" for a while: both drawings say the same
    const records = [
      fakeRecord(`pwn-1 <script>window.__pwned=5</script>`, { owner: `o'<b>"wner`, worker: hostile, lastError: `"><script>window.__pwned=6</script>` }),
      fakeRecord(`pwn-2 ${hostile}`, { kept: { reason: `<b onmouseover="window.__pwned=7">&amp; bold</b>`, at }, leaseExpires: '2099-01-01T00:00:00.000Z' }),
    ];
    await addRecords(lib, records);
    const url = `${dashboard.url}?q=pwn-`;
    // The rows, kept hosts (seconds pass between two drawings: "kept 2s ago") and summary.
    const drawn = (p: Page) =>
      p.evaluate(() => {
        const doc = (globalThis as any).document;
        return {
          rows: doc.querySelector('#hosts tbody').innerHTML,
          kept: doc.querySelector('#kept-list').innerHTML.replace(/kept \d+s ago/g, 'kept Ns ago'),
          summary: doc.querySelector('#summary').textContent,
        };
      });
    // The server's drawing, with the page's script off.
    const bare = await browser.newContext({ javaScriptEnabled: false });
    const still = await bare.newPage();
    await eventually(async () => {
      await still.goto(url);
      expect(await still.$$eval('#hosts tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-id')))).toEqual(records.map((r) => r.id));
    });
    expect(await still.$$eval('#hosts tbody .name', (els) => els.map((e) => e.textContent))).toEqual(records.map((r) => r.name));
    expect(await still.textContent(`#kept-list li[data-id="${records[1]!.id}"] .kept-reason`)).toBe(records[1]!.kept!.reason);
    expect(await still.textContent(`#hosts tr[data-id="${records[0]!.id}"] .worker`)).toBe(hostile);
    expect(await still.$$('#hosts tbody img, #hosts tbody script, #hosts tbody b, #kept-list img, #kept-list b')).toEqual([]);
    const server = await drawn(still);
    await bare.close();
    // The page's own drawing of the same rows: its script keeps the server's, so a new search (the
    // same two hosts) makes it draw them itself.
    const live = await browser.newPage();
    await live.goto(url);
    await live.waitForSelector('body[data-ready]');
    await live.evaluate(() => ((globalThis as any).__serverRow = (globalThis as any).document.querySelector('#hosts tbody tr')));
    await live.fill('#search', 'pwn');
    await live.waitForFunction(
      () => !(globalThis as any).__serverRow.isConnected && (globalThis as any).document.querySelectorAll('#hosts tbody tr').length === 2,
    );
    expect(await drawn(live)).toEqual(server);
    expect(await live.evaluate(() => (globalThis as any).__pwned)).toBeUndefined();
    await live.close();
    await lib.forget(records);
  });

  it('says when the connection is lost, and catches up when it is back', async () => {
    await dashboard.close();
    await page.waitForSelector('#offline:not([hidden])');
    expect(await page.textContent('#conn')).toBe('reconnecting…');
    await shot(page, 'dashboard-offline.png');
    const extra = await lib.checkout({ provider: 'local', name: 'web-b' }); // made while the page cannot hear
    dashboard = await startDashboard(served, { port });
    await page.waitForSelector('#offline', { state: 'hidden' });
    await page.waitForSelector(`#hosts tr[data-id="${extra.id}"]`);
    expect(await page.textContent('#conn')).toBe('live');
  });

  it('shows deployments with their members and groups', async () => {
    const deployment = await lib.up(
      {
        name: 'ipa-lab',
        domains: [
          {
            name: 'lab.test',
            hosts: [
              { name: 'master', role: 'master', group: 'ipaserver' },
              { name: 'client1', role: 'client', group: 'ipaclient' },
            ],
          },
        ],
      },
      { provider: 'local' },
    );
    await page.click('nav button[data-view="deployments"]');
    const card = `#deployments article[data-id="${deployment.id}"]`;
    await page.waitForSelector(card);
    expect(await page.textContent(`${card} h3`)).toBe('ipa-lab');
    const members = await page.$$eval(`${card} tbody tr`, (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    expect(members).toEqual([
      ['master.lab.test', 'master', 'ipaserver', 'ready'],
      ['client1.lab.test', 'client', 'ipaclient', 'ready'],
    ]);
    expect(await page.$$eval(`${card} .groups .badge`, (els) => els.map((e) => e.textContent))).toEqual(['ipaserver (1)', 'ipaclient (1)']);
    await shot(page, 'dashboard-deployments.png');
    await page.click('nav button[data-view="hosts"]');
    await page.waitForFunction((n) => (globalThis as any).document.querySelectorAll('#hosts tbody tr').length === n, 4);
    if ((await page.getAttribute('th[data-sort="name"]', 'aria-sort')) !== 'ascending') await page.click('th[data-sort="name"]');
    await page.waitForSelector('th[data-sort="name"][aria-sort="ascending"]');
    await shot(page, 'dashboard-hosts.png');
  });

  it('with a token set, refuses an action from a page not signed in, and takes it after the login link', async () => {
    const other = await newBroker();
    const guarded = await startDashboard(other, { port: 0, token: true, tokenName: 'alice' });
    try {
      const record = fakeRecord('shared-box');
      await addRecords(other, [record]);
      const p = await browser.newPage();
      await p.goto(guarded.url);
      await p.waitForSelector(`#hosts tr[data-id="${record.id}"]`);
      await p.waitForSelector('#signin:not([hidden])'); // shown once /api/me said actions need the token
      expect(await p.textContent('#user')).toBe('read-only: sign in to act');
      expect(await p.$$(`#hosts tr[data-id="${record.id}"] button`)).toEqual([]); // no buttons that would fail
      const refused = await p.evaluate(async (id) => {
        const res = await fetch(`/api/hosts/${id}/keep`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"reason":"x"}' });
        return { status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code };
      }, record.id);
      expect(refused).toEqual({ status: 401, code: 'UNAUTHORIZED' });
      expect((await other.find(record.id))?.kept).toBeUndefined();

      await p.goto(guarded.loginUrl('alice'));
      await textIs(p, '#user', /^signed in as alice$/);
      await act(p, record.id, 'keep', { reason: 'alice is looking' });
      await p.waitForSelector(`#kept-list li[data-id="${record.id}"]`);
      expect((await other.find(record.id))?.kept?.reason).toBe('alice is looking');
      const audit = (await readFile(join(other.directory, 'dashboard-audit.log'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(audit.map((l) => [l.who, l.action, l.ok])).toEqual([['alice', 'keep', true]]);
      await p.close();
    } finally {
      await guarded.close();
      await other.close();
      await rm(other.directory, { recursive: true, force: true });
    }
  });

  it('refuses a form another site posts to it', async () => {
    const { web } = hosts;
    const target = `${dashboard.url}api/hosts/${web!.id}/unkeep`;
    const evil: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<form method="post" action="${target}" enctype="text/plain"><input name='{"x":"' value='"}'></form><script>document.forms[0].submit()</script>`);
    });
    await new Promise<void>((done) => evil.listen(0, '127.0.0.1', done));
    try {
      const p = await browser.newPage();
      await p.goto(`http://localhost:${(evil.address() as { port: number }).port}/`);
      await p.waitForURL(target);
      expect(JSON.parse((await p.textContent('body'))!).error.code).toBe('FORBIDDEN_ORIGIN');
      expect((await lib.find(web!.id))?.kept).toBeDefined();
      await p.close();
    } finally {
      evil.close();
    }
  });
});
