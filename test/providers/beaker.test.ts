/**
 * beaker provider against a fake Beaker server (test/helpers/fake-beaker.ts) that follows
 * Beaker's documented HTTP and XML-RPC API. No real Beaker can run here.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError, SettingsError, TimeoutError, UserInputError } from '../../lib/errors.js';
import type { ImplementationOf, ProviderContext } from '../../lib/provider.js';
import { reapable } from '../../lib/broker/reap-rule.js';
import type { HostRecord } from '../../lib/records.js';
import { beaker, BeakerArgs, type BeakerInstance } from '../../providers/beaker/definition.js';
import { buildJobXml, parseWhiteboard, reserveTimeOf, reserves, tagJobXml } from '../../providers/beaker/jobxml.js';
import { decodeResponse, encodeCall, parseXml } from '../../providers/beaker/xml.js';
import { FakeBeaker } from '../helpers/fake-beaker.js';
import { at, on, providerTestContext, target } from '../helpers/fake-mrprovisioner.js';

const PASSWORD = 'beaker-pass-s3cret!';
let fake: FakeBeaker;
let impl: ImplementationOf<typeof beaker>;
let ctx: ProviderContext<BeakerInstance>;
let logs: string[];
let cleanup: () => Promise<void>;

const settings = (extra: Record<string, unknown> = {}) => ({
  url: fake.url,
  username: 'alice',
  password: PASSWORD,
  pollInterval: '5ms',
  reserveTimeout: '3s',
  retries: 1,
  ...extra,
});
const args = (a: Record<string, unknown> = {}) => BeakerArgs.parse({ distro: 'RHEL-9.4.0', ...a });

beforeEach(async () => {
  fake = await new FakeBeaker().start();
  fake.users.set('alice', PASSWORD);
  fake.users.set('bob', 'bob-password');
  impl = await beaker.load();
  ({ ctx, logs, cleanup } = await providerTestContext(beaker, settings()));
});

afterEach(async () => {
  await impl.close?.();
  await fake.stop();
  await cleanup();
});

function expectNoSecret(...texts: unknown[]) {
  for (const t of texts) expect(JSON.stringify(t) ?? '').not.toContain(PASSWORD);
}

async function checkedOut(a: Record<string, unknown> = {}): Promise<HostRecord> {
  const t = target('beaker');
  const host = await impl.checkout(args(a), ...at(ctx, t));
  return { ...t.record, state: 'ready', hostname: host.hostname, providerId: host.providerId, data: host.data ?? {}, leaseExpires: host.leaseExpires };
}

describe('job XML', () => {
  it('is generated from arguments with escaping, tasks, ks appends and RESERVETIME', () => {
    const xml = buildJobXml(
      args({
        variant: 'BaseOS',
        arch: 'aarch64',
        whiteboard: 'perf <run> & "quotes"',
        hostRequires: { memory: 8192, hostname: 'a&b' },
        ksAppend: ['%post\necho "]]>" > /tmp/x\n%end'],
        kernelOptions: 'console=ttyS0 quiet',
        tasks: ['/kernel/smoke', { name: '/tools/setup', params: { MODE: 'fast<1>' } }],
        reserveDuration: '2h',
      }),
      { id: 'rec-1', brokerId: 'b-1' },
      '/distribution/check-install',
    );
    const doc = parseXml(xml); // well-formed
    expect(doc.children[0]!.name).toBe('job');
    expect(xml).toContain('<whiteboard>perf &lt;run&gt; &amp; &quot;quotes&quot; [hostbroker id=rec-1 broker=b-1]</whiteboard>');
    expect(xml).toContain('<distro_variant op="=" value="BaseOS"/>');
    expect(xml).toContain('<distro_arch op="=" value="aarch64"/>');
    expect(xml).toContain('<hostname op="=" value="a&amp;b"/>');
    expect(xml).toContain('<param name="MODE" value="fast&lt;1&gt;"/>');
    expect(xml).toContain('<param name="RESERVETIME" value="7200"/>');
    expect(xml).toMatch(/check-install[\s\S]*\/kernel\/smoke[\s\S]*\/tools\/setup[\s\S]*\/distribution\/reservesys/);
    // CDATA survives a "]]>" inside the snippet.
    const ks = parseXml(xml)
      .children[0]!.children.find((c) => c.name === 'recipeSet')!
      .children[0]!.children.find((c) => c.name === 'ks_appends')!;
    expect(ks.children[0]!.text).toBe('%post\necho "]]>" > /tmp/x\n%end');
  });

  it('adds the tag to a user job XML whiteboard, or creates one', () => {
    const rec = { id: 'r1', brokerId: 'b1' };
    expect(tagJobXml('<job><whiteboard>mine</whiteboard><recipeSet><recipe whiteboard="x"/></recipeSet></job>', rec)).toContain(
      '<whiteboard>mine [hostbroker id=r1 broker=b1]</whiteboard><recipeSet>',
    );
    expect(tagJobXml('<job retention_tag="scratch">\n<recipeSet><recipe><whiteboard>inner</whiteboard></recipe></recipeSet></job>', rec)).toMatch(
      /^<job retention_tag="scratch"><whiteboard>\[hostbroker id=r1 broker=b1\]<\/whiteboard>/,
    );
    expect(tagJobXml('<job><whiteboard/><recipeSet/></job>', rec)).toContain('<whiteboard>[hostbroker id=r1 broker=b1]</whiteboard>');
    expect(() => tagJobXml('<notajob/>', rec)).toThrow(UserInputError);
    expect(parseWhiteboard('x [hostbroker id=r1 broker=b1]')).toEqual({ id: 'r1', brokerId: 'b1' });
  });

  it('parses user job XML as XML: keeps CDATA, comments and entities, and ignores look-alikes in them', () => {
    const rec = { id: 'r1', brokerId: 'b1' };
    const xml = [
      '<?xml version="1.0"?>',
      '<job><!-- <whiteboard>not this</whiteboard> --><whiteboard>a &amp; b</whiteboard>',
      '<recipeSet><recipe><ks_append><![CDATA[echo "<whiteboard>" > /tmp/x]]></ks_append>',
      '<task name="/distribution/reservesys"><params><param name="RESERVETIME" value="7200"/></params></task></recipe></recipeSet></job>',
    ].join('\n');
    const tagged = tagJobXml(xml, rec);
    expect(tagged).toContain('<whiteboard>a &amp; b [hostbroker id=r1 broker=b1]</whiteboard>');
    expect(tagged).toContain('<!-- <whiteboard>not this</whiteboard> -->');
    expect(tagged).toContain('<![CDATA[echo "<whiteboard>" > /tmp/x]]>');
    expect(parseWhiteboard(tagged)).toEqual({ id: 'r1', brokerId: 'b1' });
    expect(reserveTimeOf(tagged)).toBe(7200);
    expect(reserves(tagged)).toBe(true);
    // A reservesys named only inside a comment is no reservation.
    expect(reserves('<job><!-- /distribution/reservesys --><recipeSet/></job>')).toBe(false);
    expect(reserveTimeOf('<job><recipeSet><recipe><reservesys duration="600"/></recipe></recipeSet></job>')).toBe(600);
  });

  it('refuses malformed job XML with a UserInputError naming the line', () => {
    const error = (() => {
      try {
        tagJobXml('<job>\n<recipeSet>\n<recipe>\n</recipeSet>\n</job>', { id: 'r1', brokerId: 'b1' });
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(UserInputError);
    expect(error!.message).toMatch(/line 4, column \d+/);
  });

  it('XML-RPC round-trips calls and faults', () => {
    const call = encodeCall('jobs.filter', [{ mine: true, limit: 5, tag: 'a<b' }, ['x', 1, null]]);
    expect(call).toContain('<name>tag</name><value><string>a&lt;b</string></value>');
    expect(
      decodeResponse(
        '<?xml version="1.0"?><methodResponse><params><param><value><array><data><value><string>J:1</string></value><value>J:2</value></data></array></value></param></params></methodResponse>',
      ),
    ).toEqual(['J:1', 'J:2']);
    expect(() =>
      decodeResponse(
        '<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>1</int></value></member><member><name>faultString</name><value><string>bad &amp; wrong</string></value></member></struct></value></fault></methodResponse>',
      ),
    ).toThrow('bad & wrong');
  });
});

describe('checkout', () => {
  it('submits a tagged job, waits until the recipe is Reserved, and hands out the system', async () => {
    const t = target('beaker');
    const before = Date.now();
    const host = await impl.checkout(args({ reserveDuration: '4h' }), ...at(ctx, t));
    const job = [...fake.jobs.values()][0]!;
    expect(host.hostname).toBe(`system${job.id}.lab.example`);
    expect(host.providerId).toBe(`J:${job.id}`);
    expect(host.data).toMatchObject({ jobId: job.id, recipeId: job.recipeId });
    expect(host.connection).toMatchObject({ kind: 'ssh', host: host.hostname, username: 'root' });
    expect(parseWhiteboard(job.whiteboard)).toEqual({ id: t.record.id, brokerId: 'broker-test-1' });
    expect(job.xml).toContain('<param name="RESERVETIME" value="14400"/>');
    const lease = Date.parse(host.leaseExpires!);
    expect(lease - before).toBeGreaterThanOrEqual(4 * 3600e3 - 1000);
    expect(lease - Date.now()).toBeLessThanOrEqual(4 * 3600e3 + 1000);
    // One login; later requests carry the session cookie, never the password.
    expect(fake.requests.filter((r) => r.path === '/auth/login_password')).toHaveLength(1);
    expect(fake.requests.filter((r) => r.path !== '/auth/login_password').every((r) => !r.body.includes(PASSWORD))).toBe(true);
    expectNoSecret(host, logs);
  });

  it('accepts the reservesys-task style (recipe Running, reservesys task running)', async () => {
    fake.next = { steps: 3, outcome: 'reserve', style: 'task' };
    const host = await impl.checkout(args(), ...at(ctx, target('beaker')));
    expect(host.hostname).toMatch(/lab\.example$/);
    expect([...fake.jobs.values()][0]!.recipeStatus).toBe('Running');
  });

  it('submits a job XML file, tagged, and a forced system becomes the host', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hb-bkr-'));
    const file = join(dir, 'job.xml');
    await writeFile(
      file,
      '<job><whiteboard>nightly</whiteboard><recipeSet><recipe><hostRequires force="lab1.example.com"/><task name="/distribution/reservesys"><params><param name="RESERVETIME" value="600"/></params></task></recipe></recipeSet></job>',
    );
    const t = target('beaker');
    const host = await impl.checkout(BeakerArgs.parse({ jobXmlFile: file }), ...at(ctx, t));
    expect(host.hostname).toBe('lab1.example.com');
    expect([...fake.jobs.values()][0]!.whiteboard).toBe(`nightly [hostbroker id=${t.record.id} broker=broker-test-1]`);
    expect(Date.parse(host.leaseExpires!) - Date.now()).toBeLessThanOrEqual(600e3);
    await rm(dir, { recursive: true });
  });

  it('fails with the recipe status and result when the recipe is Aborted, and cancels nothing twice', async () => {
    fake.next = { steps: 1, outcome: 'abort', style: 'reserved' };
    const err = await impl.checkout(args(), ...at(ctx, target('beaker'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as Error).message).toMatch(/recipe R:\d+ of J:\d+ ended Aborted \(result Warn\) before its system was reserved/);
    expect((err as ProviderError).status).toBe('Aborted');
  });

  it('gives up after the reserve timeout and cancels the job', async () => {
    fake.next = { steps: 1000, outcome: 'reserve', style: 'reserved' };
    const { ctx: slow, cleanup: c } = await providerTestContext(beaker, settings({ reserveTimeout: '200ms', pollInterval: '20ms' }));
    const err = await impl.checkout(args(), ...at(slow, target('beaker'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toMatch(/not reserved within 0 s \(recipe status: (Scheduled|Installing)\); it was cancelled/);
    const job = [...fake.jobs.values()][0]!;
    expect(job.status).toBe('Cancelled');
    expect(job.cancelMsg).toMatch(/hostbroker gave up/);
    await c();
  });

  it('stops waiting and cancels the job when the checkout is aborted', async () => {
    fake.next = { steps: 1000, outcome: 'reserve', style: 'reserved' };
    const abort = new AbortController();
    const checkout = impl.checkout(args(), ...at(ctx, target('beaker'), { signal: abort.signal }));
    while (fake.jobs.size === 0) await new Promise((r) => setTimeout(r, 5));
    abort.abort();
    await expect(checkout).rejects.toThrow(/given up|cancelled/);
    expect([...fake.jobs.values()][0]!.status).toBe('Cancelled');
  });

  it('carries the XML-RPC fault message when the job is refused', async () => {
    const err = await impl.checkout(args({ distro: 'NO-SUCH-DISTRO' }), ...at(ctx, target('beaker'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as Error).message).toContain('jobs.upload failed: No distro tree matches Recipe');
    expect((err as Error).message).not.toContain("<class '");
  });

  it('says what to do when the password is wrong, without the password anywhere', async () => {
    fake.users.set('alice', 'changed');
    const err = await impl.checkout(args(), ...at(ctx, target('beaker'))).catch((e: unknown) => e);
    expect((err as ProviderError).status).toBe(401);
    expect((err as Error).message).toContain('Invalid username or password');
    expect((err as Error).message).toContain('beaker.username');
    expectNoSecret((err as Error).message, logs);
  });

  it('logs in with an OAuth2 access token from the environment', async () => {
    fake.tokens.set('tok-abcdef-123456', 'alice');
    process.env.HB_TEST_BEAKER_TOKEN = 'tok-abcdef-123456';
    const { ctx: tokenCtx, cleanup: c } = await providerTestContext(beaker, { url: fake.url, tokenEnv: 'HB_TEST_BEAKER_TOKEN', pollInterval: '5ms' });
    try {
      const host = await impl.checkout(args(), ...at(tokenCtx, target('beaker')));
      expect(host.providerId).toMatch(/^J:/);
      expect(fake.requests.some((r) => r.path === '/auth/login_oauth2')).toBe(true);
    } finally {
      delete process.env.HB_TEST_BEAKER_TOKEN;
      await c();
    }
  });

  it('needs credentials, and says Kerberos is not supported', async () => {
    const { ctx: none, cleanup: c } = await providerTestContext(beaker, { url: fake.url, passwordEnv: 'HB_NO_SUCH', tokenEnv: 'HB_NO_SUCH2' });
    await expect(impl.checkout(args(), ...at(none, target('beaker')))).rejects.toThrow(SettingsError);
    await expect(impl.checkout(args(), ...at(none, target('beaker')))).rejects.toThrow(/HB_NO_SUCH.*Kerberos/);
    await c();
  });

  it('logs in again when the session expired', async () => {
    await checkedOut();
    fake.expireSessions();
    await checkedOut();
    expect(fake.requests.filter((r) => r.path === '/auth/login_password')).toHaveLength(2);
  });

  it('keeps waiting through a 5xx while polling, and reports a 403 with its message', async () => {
    fake.fail('GET', /^\/jobs\/\d+$/, 503, 'Service Unavailable', 3);
    const host = await impl.checkout(args(), ...at(ctx, target('beaker')));
    expect(host.hostname).toMatch(/lab\.example$/);
    expect(logs.join('\n')).toMatch(/reading J:\d+ failed, trying again/);

    fake.fail('POST', /^\/RPC2$/, 403, 'Your account is disabled', 2);
    const err = await impl.checkout(args(), ...at(ctx, target('beaker'))).catch((e: unknown) => e);
    expect((err as ProviderError).status).toBe(403);
    expect((err as Error).message).toContain('Your account is disabled');
  });

  it('turns a malformed job answer into a ProviderError and cancels the job', async () => {
    fake.malformed.push(/^\/jobs\/\d+$/);
    const err = await impl.checkout(args(), ...at(ctx, target('beaker'))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect((err as Error).message).toMatch(/unexpected shape \(response\.id/);
    expect([...fake.jobs.values()][0]!.status).toBe('Cancelled');
  });

  it('concurrent checkouts of N make N jobs and N different systems with one login', async () => {
    const hosts = await Promise.all([0, 1, 2, 3, 4].map(() => impl.checkout(args(), ...at(ctx, target('beaker')))));
    expect(new Set(hosts.map((h) => h.hostname)).size).toBe(5);
    expect(fake.jobs.size).toBe(5);
    expect(new Set([...fake.jobs.values()].map((j) => parseWhiteboard(j.whiteboard)!.id)).size).toBe(5);
    expect(fake.requests.filter((r) => r.path === '/auth/login_password')).toHaveLength(1);
  });
});

describe('release, extend, sync', () => {
  it('checkin cancels the job; a second checkin does nothing', async () => {
    const record = await checkedOut();
    await impl.release(record, on(ctx, record));
    const job = fake.jobs.get(record.data.jobId as number)!;
    expect(job.status).toBe('Cancelled');
    expect(job.cancelMsg).toContain(record.id);
    const before = fake.requests.length;
    await impl.release(record, on(ctx, record));
    expect(fake.requests.slice(before).filter((r) => r.path.endsWith('/status'))).toHaveLength(0);
  });

  it('release of a record still provisioning finds the job by its whiteboard tag', async () => {
    fake.next = { steps: 1000, outcome: 'reserve', style: 'reserved' };
    const t = target('beaker');
    const { ctx: slow, cleanup: c } = await providerTestContext(beaker, settings({ reserveTimeout: '10s' }));
    const abort = new AbortController();
    const pending = impl.checkout(args(), ...at(slow, t, { signal: abort.signal })).catch(() => undefined);
    while (fake.jobs.size === 0) await new Promise((r) => setTimeout(r, 5));
    await impl.release(t.record, on(ctx, t.record)); // no providerId yet
    expect([...fake.jobs.values()][0]!.status).toBe('Cancelled');
    abort.abort();
    await pending;
    await c();
  });

  it('release of a job that is gone is a success', async () => {
    const record = await checkedOut();
    fake.jobs.clear();
    await expect(impl.release(record, on(ctx, record))).resolves.toBeUndefined();
  });

  it('release mode "return" ends the reservation through the watchdog', async () => {
    const { ctx: ret, cleanup: c } = await providerTestContext(beaker, settings({ release: 'return' }));
    const t = target('beaker');
    const host = await impl.checkout(args(), ...at(ret, t));
    await impl.release(
      { ...t.record, providerId: host.providerId, data: host.data ?? {} },
      on(ret, { ...t.record, providerId: host.providerId, data: host.data ?? {} }),
    );
    const job = fake.jobs.get(host.data!.jobId as number)!;
    expect(job.killTime).toBe(0);
    expect(job.status).toBe('Reserved');
    await c();
  });

  it('extend moves the recipe watchdog to the new lease end', async () => {
    const record = await checkedOut();
    await impl.extend!(record, new Date(Date.now() + 3 * 3600e3).toISOString(), on(ctx, record));
    const job = fake.jobs.get(record.data.jobId as number)!;
    expect(job.killTime).toBeGreaterThan(3 * 3600 - 5);
    expect(job.killTime).toBeLessThanOrEqual(3 * 3600);
    await expect(impl.extend!(record, new Date(Date.now() - 1000).toISOString(), on(ctx, record))).rejects.toThrow(UserInputError);
    await impl.release(record, on(ctx, record));
    await expect(impl.extend!(record, new Date(Date.now() + 3600e3).toISOString(), on(ctx, record))).rejects.toThrow(/No watchdog exists for recipe/);
  });

  it("sync lists the user's unfinished tagged jobs of this broker only", async () => {
    const a = await checkedOut();
    const b = await checkedOut();
    await impl.release(b, on(ctx, b));
    // A job of this user without a tag, one of another broker, and one of another user.
    fake.jobs.set(1, { ...fake.jobs.get(a.data.jobId as number)!, id: 1, whiteboard: 'by hand' });
    fake.jobs.set(2, { ...fake.jobs.get(a.data.jobId as number)!, id: 2, whiteboard: '[hostbroker id=z broker=elsewhere]' });
    fake.jobs.set(3, { ...fake.jobs.get(a.data.jobId as number)!, id: 3, owner: 'bob' });
    const found = await impl.discover!(ctx);
    expect(found.map((h) => h.id)).toEqual([a.id]);
    expect(found[0]).toMatchObject({ brokerId: 'broker-test-1', hostname: a.hostname, providerId: a.providerId });
  });

  it('reports what the reap rule needs: tagged jobs whose record is gone are picked, and release cancels them', async () => {
    const keep = await checkedOut();
    const lost = await checkedOut();
    const doomed = reapable(await impl.discover!(ctx), { brokerId: 'broker-test-1', isKnown: (id) => id === keep.id, now: Date.now(), graceMs: 0 });
    expect(doomed.map((d) => d.host.id)).toEqual([lost.id]);
    for (const { host } of doomed) await impl.release({ ...lost, providerId: host.providerId, data: host.data ?? {} }, on(ctx, lost));
    expect(fake.jobs.get(lost.data.jobId as number)!.status).toBe('Cancelled');
    expect(fake.jobs.get(keep.data.jobId as number)!.status).toBe('Reserved');
  });

  it('describe lists distro trees and running jobs', async () => {
    await checkedOut();
    const d = await impl.describe!(ctx);
    expect(d.distros).toEqual([expect.objectContaining({ distro_name: 'RHEL-9.4.0', arch: 'x86_64' })]);
    expect((d.jobs as unknown[]).length).toBe(1);
  });
});

describe('arguments', () => {
  it('need a distro or a job XML, not both kinds of XML', () => {
    expect(BeakerArgs.safeParse({}).success).toBe(false);
    expect(BeakerArgs.safeParse({ jobXml: '<job/>', jobXmlFile: '/x' }).success).toBe(false);
    expect(BeakerArgs.safeParse({ family: 'RedHatEnterpriseLinux9', tag: 'RELEASED' }).success).toBe(true);
    expect(BeakerArgs.safeParse({ distro: 'X', bogus: 1 }).success).toBe(false);
  });
});
