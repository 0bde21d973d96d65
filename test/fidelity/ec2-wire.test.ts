/**
 * The ec2 provider with the real @aws-sdk/client-ec2 (no client mock) against a local endpoint
 * that answers EC2's Query API in its documented XML (test/helpers/ec2-query.ts): SigV4 signing,
 * query serialization, XML parsing, NextToken pagination, ClientToken idempotency and the
 * provider's retries of throttling and capacity errors all run on the wire.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../../lib/errors.js';
import { TAGS } from '../../lib/provider.js';
import { type TestContext, intentRecord, testContext, testHostContext } from '../../lib/testing/index.js';
import { type Ec2Instance, ec2 } from '../../providers/ec2/definition.js';
import { createEc2Provider } from '../../providers/ec2/provider.js';
import { Ec2QueryServer } from '../helpers/ec2-query.js';
import { rejection } from '../helpers/rejection.js';

const AMI = 'ami-0abcdef1234567890';
let server: Ec2QueryServer;
let provider: ReturnType<typeof createEc2Provider>;
let t: TestContext<Ec2Instance>;

async function context(extra: Record<string, unknown> = {}) {
  t = await testContext(ec2, {
    instanceSettings: server.settings(extra),
    settings: { ssh: { username: 'ec2-user' } },
    owner: 'alice',
  });
  return t;
}

function target() {
  const record = intentRecord(t, { leaseExpires: new Date(Date.now() + 3600_000).toISOString() });
  return { target: { record, index: 0, count: 1 }, ctx: testHostContext(t, record) };
}

const sent = (action: string) => server.requests.filter((r) => r.action === action);

beforeEach(async () => {
  server = await Ec2QueryServer.start();
  provider = createEc2Provider();
});
afterEach(async () => {
  await provider.close?.();
  await t?.cleanup();
  await server.close();
});

describe('ec2 on the wire (real SDK, local Query API endpoint)', () => {
  it('checks out: a signed RunInstances with a ClientToken and tag specifications, then polls until running', async () => {
    await context();
    const { target: tg, ctx } = target();
    const host = await provider.checkout(ec2.args.parse({ image: AMI, instanceType: 't3.micro' }), tg, ctx);
    const [run] = sent('RunInstances');
    expect(run!.params.get('ClientToken')).toBe(`hb-${tg.record.id}-0`);
    expect(run!.params.get('TagSpecification.1.ResourceType')).toBe('instance');
    expect(server.instances.get(host.providerId!)!.tags.get(TAGS.id)).toBe(tg.record.id);
    expect(host.hostname).toMatch(/^10\.0\.1\.\d+$/);
    expect(host.connection).toMatchObject({ kind: 'ssh', host: host.hostname, username: 'ec2-user' });
    expect(sent('DescribeInstances').length).toBeGreaterThanOrEqual(2);
  });

  it('retries RequestLimitExceeded (HTTP 503) with the same ClientToken, so one instance is made', async () => {
    await context();
    server.fail('RunInstances', 'RequestLimitExceeded', 'Request limit exceeded.', 503, 2);
    const { target: tg, ctx } = target();
    await provider.checkout(ec2.args.parse({ image: AMI }), tg, ctx);
    const tokens = sent('RunInstances').map((r) => r.params.get('ClientToken'));
    expect(tokens).toHaveLength(3);
    expect(new Set(tokens).size).toBe(1);
    expect(server.instances.size).toBe(1);
  });

  it('moves to the next subnet on InsufficientInstanceCapacity', async () => {
    await context({ subnet: ['subnet-0aaa1111', 'subnet-0bbb2222'] });
    server.fail(
      'RunInstances',
      'InsufficientInstanceCapacity',
      'We currently do not have sufficient t3.micro capacity in the Availability Zone you requested (eu-west-1a).',
      500,
    );
    const { target: tg, ctx } = target();
    const host = await provider.checkout(ec2.args.parse({ image: AMI }), tg, ctx);
    expect(sent('RunInstances').map((r) => r.params.get('SubnetId'))).toEqual(['subnet-0aaa1111', 'subnet-0bbb2222']);
    expect(server.instances.get(host.providerId!)!.subnetId).toBe('subnet-0bbb2222');
  });

  it('gives up after the attempts with the AWS code, and a retryable ProviderError', async () => {
    await context({ attempts: 2 });
    server.fail('RunInstances', 'InsufficientInstanceCapacity', 'We currently do not have sufficient capacity.', 500, 5);
    const { target: tg, ctx } = target();
    const error = await rejection<ProviderError>(provider.checkout(ec2.args.parse({ image: AMI }), tg, ctx));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.status).toBe('InsufficientInstanceCapacity');
    expect(error.retryable).toBe(true);
    expect(server.instances.size).toBe(0);
  });

  it('finds every instance of the broker across DescribeInstances pages (NextToken), by tag and state filters', async () => {
    await context();
    server.pageSize = 2;
    for (let i = 0; i < 5; i++) {
      const { target: tg, ctx } = target();
      await provider.checkout(ec2.args.parse({ image: AMI }), tg, ctx);
    }
    const found = await provider.discover!(t.ctx);
    expect(found).toHaveLength(5);
    const listing = sent('DescribeInstances').filter((r) => r.params.get('Filter.1.Name') === `tag:${TAGS.broker}`);
    expect(listing.map((r) => r.params.has('NextToken'))).toEqual([false, true, true]);
    expect(listing[0]!.params.get('Filter.2.Name')).toBe('instance-state-name');
  });

  it('extends with CreateTags and releases with TerminateInstances; releasing again is a no-op', async () => {
    await context();
    const { target: tg, ctx } = target();
    const host = await provider.checkout(ec2.args.parse({ image: AMI }), tg, ctx);
    const record = { ...tg.record, state: 'ready' as const, providerId: host.providerId!, hostname: host.hostname, data: host.data ?? {} };
    const lease = new Date(Date.now() + 7200_000).toISOString();
    await provider.extend!(record, lease, ctx);
    expect(server.instances.get(host.providerId!)!.tags.get(TAGS.lease)).toBe(lease);
    await provider.release(record, ctx);
    expect(server.live(host.providerId)).toBe(false);
    await provider.release(record, ctx);
    expect(sent('TerminateInstances').length).toBeGreaterThanOrEqual(1);
  });

  it('refuses a wrong secret with AuthFailure, and keeps the secret out of the message', async () => {
    await context({ secretAccessKey: 'not-the-secret-key-0000000000000000000000' });
    const { target: tg, ctx } = target();
    const error = await rejection<ProviderError>(provider.checkout(ec2.args.parse({ image: AMI }), tg, ctx));
    expect(error.status).toBe('AuthFailure');
    expect(error.message).not.toContain('not-the-secret-key');
    expect(server.instances.size).toBe(0);
  });
});
