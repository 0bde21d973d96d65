/**
 * The ec2 provider against aws-sdk-client-mock (no EC2 endpoint is reachable here). Responses and
 * errors follow the EC2 API: error names are AWS error codes, instances go pending → running.
 */
import {
  CreateTagsCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  EC2Client,
  RunInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError, TimeoutError } from '../../lib/errors.js';
import { reapable } from '../../lib/broker/reap-rule.js';
import { type CheckoutTarget, TAGS } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { type TestContext, intentRecord, readyRecord, testContext, testHostContext } from '../../lib/testing/index.js';
import { type Ec2Instance, ec2 } from '../../providers/ec2/definition.js';
import { createEc2Provider } from '../../providers/ec2/provider.js';
import { awsError, fastSettings, instance, reservation } from '../helpers/ec2.js';

const ec2Mock = mockClient(EC2Client);
const ssmMock = mockClient(SSMClient);
const AMI = 'ami-0abcdef1234567890';

let t: TestContext<Ec2Instance>;

const makeContext = (instanceSettings: Record<string, unknown>) =>
  testContext(ec2, { instanceSettings, settings: { ssh: { username: 'fallback-user' } }, owner: 'alice' });
/** An intent record with a lease, as the Broker writes it. */
const newRecord = (fields: Partial<HostRecord> = {}) => intentRecord(t, { leaseExpires: new Date(Date.now() + 3600_000).toISOString(), ...fields });
/** A checkout target and the host context for it, as the Broker passes them. */
const target = (index = 0, count = 1) => {
  const record = newRecord();
  return [{ record, index, count }, testHostContext(t, record)] as const satisfies readonly [CheckoutTarget, unknown];
};
let provider: ReturnType<typeof createEc2Provider>;

beforeEach(async () => {
  ec2Mock.reset();
  ssmMock.reset();
  provider = createEc2Provider();
  t = await makeContext({ ...fastSettings });
});
afterEach(async () => {
  await provider.close?.();
  await t.cleanup();
});

const args = (extra: Record<string, unknown> = {}) => ec2.args.parse({ image: AMI, ...extra });

/** RunInstances answers with a pending instance; DescribeInstances shows it pending, then running. */
function launches(id = 'i-0123456789abcdef0', running: Record<string, unknown> = { PublicIpAddress: '203.0.113.10' }) {
  ec2Mock.on(RunInstancesCommand).resolves({ Instances: [instance(id)], ReservationId: 'r-1', OwnerId: '123456789012' });
  ec2Mock
    .on(DescribeInstancesCommand, { InstanceIds: [id] })
    .resolvesOnce(reservation(instance(id)))
    .resolves(reservation(instance(id, { State: { Code: 16, Name: 'running' }, ...running })));
}

describe('ec2 checkout', () => {
  it('runs one tagged instance, waits for running and returns its public address', async () => {
    launches();
    const record = newRecord();
    const host = await provider.checkout(
      args({
        subnet: 'subnet-0aaa1111',
        securityGroups: ['sg-1'],
        keyName: 'ci-key',
        userData: '#!/bin/sh\necho hi',
        username: 'admin',
        privateKeyPath: '/keys/ci.pem',
      }),
      { record, index: 0, count: 1 },
      testHostContext(t, record),
    );
    expect(host).toMatchObject({
      hostname: '203.0.113.10',
      providerId: 'i-0123456789abcdef0',
      connection: { kind: 'ssh', host: '203.0.113.10', port: 22, username: 'admin', privateKeyPath: '/keys/ci.pem' },
      data: { region: 'eu-west-1', instanceId: 'i-0123456789abcdef0', imageId: AMI, privateIp: '10.0.1.23', spot: false },
    });
    const [run] = ec2Mock.commandCalls(RunInstancesCommand);
    const input = run!.args[0].input;
    expect(input).toMatchObject({
      ImageId: AMI,
      InstanceType: 't3.micro',
      MinCount: 1,
      MaxCount: 1,
      SubnetId: 'subnet-0aaa1111',
      SecurityGroupIds: ['sg-1'],
      KeyName: 'ci-key',
    });
    expect(Buffer.from(input.UserData!, 'base64').toString()).toBe('#!/bin/sh\necho hi');
    expect(input.ClientToken).toContain(record.id);
    const expected = [
      { Key: TAGS.id, Value: record.id },
      { Key: TAGS.owner, Value: 'alice' },
      { Key: TAGS.broker, Value: 'broker-test-1' },
      { Key: TAGS.lease, Value: record.leaseExpires },
      { Key: 'Name', Value: record.name },
    ];
    for (const spec of input.TagSpecifications!) expect(spec.Tags).toEqual(expect.arrayContaining(expected));
    expect(input.TagSpecifications!.map((s) => s.ResourceType)).toEqual(['instance', 'volume']);
    expect(ec2Mock.commandCalls(DescribeInstancesCommand).length).toBeGreaterThanOrEqual(2);
  });

  it('uses the private address when asked, and the ssh settings user by default', async () => {
    launches();
    const record = newRecord();
    const host = await provider.checkout(args({ address: 'private' }), { record, index: 0, count: 1 }, testHostContext(t, record));
    expect(host.hostname).toBe('10.0.1.23');
    expect(host.connection).toMatchObject({ username: 'fallback-user' });
  });

  it('falls back to the private address when a running instance gets no public one', async () => {
    launches('i-0aa', {});
    const host = await provider.checkout(args(), ...target());
    expect(host.hostname).toBe('10.0.1.23');
  });

  it('resolves an ssm: image through Parameter Store', async () => {
    ssmMock.on(GetParameterCommand, { Name: '/aws/service/debian/release/12/latest/amd64' }).resolves({
      Parameter: { Name: '/aws/service/debian/release/12/latest/amd64', Type: 'String', Value: 'ami-0fedcba9876543210', Version: 42 },
    });
    launches();
    await provider.checkout(args({ image: 'ssm:/aws/service/debian/release/12/latest/amd64' }), ...target());
    expect(ec2Mock.commandCalls(RunInstancesCommand)[0]!.args[0].input.ImageId).toBe('ami-0fedcba9876543210');
  });

  it('resolves an image name to the newest available match, once for many hosts', async () => {
    ec2Mock.on(DescribeImagesCommand).resolves({
      Images: [
        { ImageId: 'ami-0old', Name: 'debian-12-amd64-20250101', CreationDate: '2025-01-01T00:00:00.000Z', State: 'available' },
        { ImageId: 'ami-0new', Name: 'debian-12-amd64-20260101', CreationDate: '2026-01-01T00:00:00.000Z', State: 'available' },
      ],
    });
    launches();
    const a = args({ image: 'debian-12-amd64-*' });
    await Promise.all([0, 1].map(async (index) => provider.checkout(a, ...target(index, 2))));
    expect(ec2Mock.commandCalls(RunInstancesCommand).map((c) => c.args[0].input.ImageId)).toEqual(['ami-0new', 'ami-0new']);
    const lookups = ec2Mock.commandCalls(DescribeImagesCommand);
    expect(lookups).toHaveLength(1);
    expect(lookups[0]!.args[0].input).toMatchObject({
      Owners: ['self', 'amazon'],
      Filters: expect.arrayContaining([{ Name: 'name', Values: ['debian-12-amd64-*'] }]),
    });
  });

  it('falls back to the Name tag, and says what to do when no image matches', async () => {
    ec2Mock.on(DescribeImagesCommand).resolves({ Images: [] });
    const error = await provider.checkout(args({ image: 'golden-ci' }), ...target()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as Error).message).toMatch(/no available image is named \(or tagged Name=\) "golden-ci".*give an AMI id/);
    const filters = ec2Mock.commandCalls(DescribeImagesCommand).map((c) => c.args[0].input.Filters![0]!.Name);
    expect(filters).toEqual(['name', 'tag:Name']);
    expect(ec2Mock.commandCalls(RunInstancesCommand)).toHaveLength(0);
  });

  it('retries a throttled RunInstances with the same client token, then succeeds', async () => {
    launches();
    ec2Mock
      .on(RunInstancesCommand)
      .rejectsOnce(awsError('RequestLimitExceeded', 'Request limit exceeded.', 503))
      .resolves({ Instances: [instance('i-0123456789abcdef0')] });
    const host = await provider.checkout(args(), ...target());
    expect(host.providerId).toBe('i-0123456789abcdef0');
    const calls = ec2Mock.commandCalls(RunInstancesCommand);
    expect(calls).toHaveLength(2);
    expect(calls[1]!.args[0].input.ClientToken).toBe(calls[0]!.args[0].input.ClientToken);
    expect(t.logLines.some((l) => l.includes('RequestLimitExceeded') && l.includes('retrying'))).toBe(true);
  });

  it('moves to the next subnet after InsufficientInstanceCapacity', async () => {
    launches();
    ec2Mock
      .on(RunInstancesCommand)
      .rejectsOnce(
        awsError(
          'InsufficientInstanceCapacity',
          'We currently do not have sufficient c7i.48xlarge capacity in the Availability Zone you requested (eu-west-1a).',
          500,
        ),
      )
      .resolves({ Instances: [instance('i-0123456789abcdef0')] });
    await provider.checkout(args({ subnet: ['subnet-a', 'subnet-b'] }), ...target());
    expect(ec2Mock.commandCalls(RunInstancesCommand).map((c) => c.args[0].input.SubnetId)).toEqual(['subnet-a', 'subnet-b']);
  });

  it('gives up on capacity after the configured attempts with a ProviderError carrying the AWS code', async () => {
    await t.cleanup();
    t = await makeContext({ ...fastSettings, attempts: 3 });
    ec2Mock
      .on(RunInstancesCommand)
      .rejects(
        awsError('InsufficientInstanceCapacity', 'We currently do not have sufficient t3.micro capacity in the Availability Zone you requested (eu-west-1a).'),
      );
    const error = (await provider.checkout(args(), ...target()).catch((e: unknown) => e)) as ProviderError;
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.status).toBe('InsufficientInstanceCapacity');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(
      /after 3 attempts: InsufficientInstanceCapacity: We currently do not have sufficient t3\.micro capacity.*try another instance type or subnet/,
    );
    expect(ec2Mock.commandCalls(RunInstancesCommand)).toHaveLength(3);
  });

  it('does not retry a client error, and reports the AWS code and message', async () => {
    ec2Mock.on(RunInstancesCommand).rejects(awsError('InvalidAMIID.NotFound', "The image id '[ami-0abcdef1234567890]' does not exist"));
    const error = (await provider.checkout(args(), ...target()).catch((e: unknown) => e)) as ProviderError;
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.status).toBe('InvalidAMIID.NotFound');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain("InvalidAMIID.NotFound: The image id '[ami-0abcdef1234567890]' does not exist");
    expect(ec2Mock.commandCalls(RunInstancesCommand)).toHaveLength(1);
  });

  it('spreads hosts over a list of subnets by their index', async () => {
    launches();
    const a = args({ subnet: ['subnet-a', 'subnet-b'] });
    for (const index of [0, 1, 2]) await provider.checkout(a, ...target(index, 3));
    expect(ec2Mock.commandCalls(RunInstancesCommand).map((c) => c.args[0].input.SubnetId)).toEqual(['subnet-a', 'subnet-b', 'subnet-a']);
  });

  it('asks for a one-time spot instance', async () => {
    launches();
    await provider.checkout(args({ spot: { maxPrice: '0.05' } }), ...target());
    expect(ec2Mock.commandCalls(RunInstancesCommand)[0]!.args[0].input.InstanceMarketOptions).toEqual({
      MarketType: 'spot',
      SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate', MaxPrice: '0.05' },
    });
  });

  it('fails with the state reason when the instance terminates while starting, and terminates it', async () => {
    ec2Mock.on(RunInstancesCommand).resolves({ Instances: [instance('i-0dead')] });
    ec2Mock.on(DescribeInstancesCommand).resolves(
      reservation(
        instance('i-0dead', {
          State: { Code: 48, Name: 'terminated' },
          StateReason: {
            Code: 'Server.InsufficientInstanceCapacity',
            Message: 'Server.InsufficientInstanceCapacity: Insufficient capacity to satisfy instance request',
          },
        }),
      ),
    );
    ec2Mock.on(TerminateInstancesCommand).resolves({ TerminatingInstances: [] });
    const error = (await provider.checkout(args({ spot: true }), ...target()).catch((e: unknown) => e)) as ProviderError;
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.message).toMatch(/i-0dead went to terminated while starting \(Server\.InsufficientInstanceCapacity/);
    expect(error.retryable).toBe(true);
    expect(ec2Mock.commandCalls(TerminateInstancesCommand)[0]!.args[0].input).toEqual({ InstanceIds: ['i-0dead'] });
  });

  it('bounds the wait for running with a TimeoutError and terminates the instance', async () => {
    ec2Mock.on(RunInstancesCommand).resolves({ Instances: [instance('i-0slow')] });
    ec2Mock.on(DescribeInstancesCommand).resolves(reservation(instance('i-0slow')));
    ec2Mock.on(TerminateInstancesCommand).resolves({});
    const error = await provider.checkout(args(), ...target()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TimeoutError);
    expect((error as Error).message).toMatch(/i-0slow was still pending .* Raise runningTimeout/);
    expect(ec2Mock.commandCalls(TerminateInstancesCommand)).toHaveLength(1);
  });

  it('keeps polling while EC2 does not know a fresh instance id yet', async () => {
    ec2Mock.on(RunInstancesCommand).resolves({ Instances: [instance('i-0new')] });
    ec2Mock
      .on(DescribeInstancesCommand)
      .rejectsOnce(awsError('InvalidInstanceID.NotFound', "The instance ID 'i-0new' does not exist"))
      .resolves(reservation(instance('i-0new', { State: { Code: 16, Name: 'running' }, PublicIpAddress: '198.51.100.7' })));
    const host = await provider.checkout(args(), ...target());
    expect(host.hostname).toBe('198.51.100.7');
  });
});

describe('ec2 release, extend, inventory (for sync and reap)', () => {
  it('terminates the instance of a ready record', async () => {
    ec2Mock.on(TerminateInstancesCommand).resolves({ TerminatingInstances: [{ InstanceId: 'i-1', CurrentState: { Name: 'shutting-down' } }] });
    const record = newRecord({ state: 'ready', providerId: 'i-1', data: { region: 'us-east-2' } });
    await provider.release(record, testHostContext(t, record));
    expect(ec2Mock.commandCalls(TerminateInstancesCommand)[0]!.args[0].input).toEqual({ InstanceIds: ['i-1'] });
    expect(await ec2Mock.commandCalls(TerminateInstancesCommand)[0]!.thisValue.config.region()).toBe('us-east-2');
  });

  it('treats an instance that is already gone as released', async () => {
    ec2Mock.on(TerminateInstancesCommand).rejects(awsError('InvalidInstanceID.NotFound', "The instance ID 'i-gone' does not exist"));
    const record = newRecord({ state: 'ready', providerId: 'i-gone' });
    await expect(provider.release(record, testHostContext(t, record))).resolves.toBeUndefined();
  });

  it('finds a provisioning record by its id tag and terminates what it finds', async () => {
    const record = newRecord();
    ec2Mock.on(DescribeInstancesCommand).resolves(reservation(instance('i-orphan', { Tags: [{ Key: TAGS.id, Value: record.id }] })));
    ec2Mock.on(TerminateInstancesCommand).resolves({});
    await provider.release(record, testHostContext(t, record));
    expect(ec2Mock.commandCalls(DescribeInstancesCommand)[0]!.args[0].input.Filters).toEqual([
      { Name: `tag:${TAGS.id}`, Values: [record.id] },
      { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
    ]);
    expect(ec2Mock.commandCalls(TerminateInstancesCommand)[0]!.args[0].input).toEqual({ InstanceIds: ['i-orphan'] });
  });

  it('releases a provisioning record that never got an instance without calling terminate', async () => {
    ec2Mock.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    const record = newRecord();
    await provider.release(record, testHostContext(t, record));
    expect(ec2Mock.commandCalls(TerminateInstancesCommand)).toHaveLength(0);
  });

  it('extends by rewriting the lease tag', async () => {
    ec2Mock.on(CreateTagsCommand).resolves({});
    const record = newRecord({ state: 'ready', providerId: 'i-1' });
    await provider.extend!(record, '2030-01-01T00:00:00.000Z', testHostContext(t, record));
    expect(ec2Mock.commandCalls(CreateTagsCommand)[0]!.args[0].input).toEqual({
      Resources: ['i-1'],
      Tags: [{ Key: TAGS.lease, Value: '2030-01-01T00:00:00.000Z' }],
    });
  });

  it('lists this broker’s instances by tag across pages for sync', async () => {
    const tags = (id: string) => [
      { Key: TAGS.id, Value: id },
      { Key: TAGS.owner, Value: 'bob' },
      { Key: TAGS.broker, Value: 'broker-test-1' },
      { Key: TAGS.lease, Value: '2030-01-01T00:00:00.000Z' },
      { Key: TAGS.name, Value: `web-${id}` },
    ];
    ec2Mock
      .on(DescribeInstancesCommand)
      .resolvesOnce({
        ...reservation(instance('i-a', { State: { Code: 16, Name: 'running' }, PublicIpAddress: '203.0.113.1', Tags: tags('r1') })),
        NextToken: 'page2',
      })
      .resolvesOnce(reservation(instance('i-b', { State: { Code: 80, Name: 'stopped' }, Tags: tags('r2') })));
    const found = await provider.discover!(t.ctx);
    expect(found).toEqual([
      expect.objectContaining({
        id: 'r1',
        owner: 'bob',
        brokerId: 'broker-test-1',
        providerId: 'i-a',
        hostname: '203.0.113.1',
        name: 'web-r1',
        leaseExpires: '2030-01-01T00:00:00.000Z',
        createdAt: '2026-01-05T10:00:00.000Z',
      }),
      expect.objectContaining({ id: 'r2', providerId: 'i-b', hostname: '10.0.1.23' }),
    ]);
    const calls = ec2Mock.commandCalls(DescribeInstancesCommand);
    expect(calls[0]!.args[0].input.Filters![0]).toEqual({ Name: `tag:${TAGS.broker}`, Values: ['broker-test-1'] });
    expect(calls[1]!.args[0].input.NextToken).toBe('page2');
  });

  it('reports the tags the reap rule needs: the unknown and the expired are picked, and release terminates them', async () => {
    const tagged = (id: string, lease: string) => [
      { Key: TAGS.id, Value: id },
      { Key: TAGS.broker, Value: 'broker-test-1' },
      { Key: TAGS.lease, Value: lease },
    ];
    ec2Mock
      .on(DescribeInstancesCommand)
      .resolves(
        reservation(
          instance('i-known', { Tags: tagged('known', '2099-01-01T00:00:00Z') }),
          instance('i-unknown', { Tags: tagged('lost', '2099-01-01T00:00:00Z') }),
          instance('i-expired', { Tags: tagged('old', '2000-01-01T00:00:00Z') }),
        ),
      );
    ec2Mock.on(TerminateInstancesCommand).resolves({});
    const doomed = reapable(await provider.discover!(t.ctx), {
      brokerId: 'broker-test-1',
      isKnown: (id) => id === 'known' || id === 'old',
      now: Date.now(),
      graceMs: 0,
    });
    expect(doomed.map((d) => d.host.providerId).sort()).toEqual(['i-expired', 'i-unknown']);
    for (const { host } of doomed) await provider.release(newRecord({ id: host.id, providerId: host.providerId! }), testHostContext(t, host.id));
    expect(
      ec2Mock
        .commandCalls(TerminateInstancesCommand)
        .flatMap((c) => c.args[0].input.InstanceIds!)
        .sort(),
    ).toEqual(['i-expired', 'i-unknown']);
  });
});

describe('ec2 secrets and mapping', () => {
  it('never puts credentials from the settings into the record, the logs or an error', async () => {
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    await t.cleanup();
    t = await makeContext({ ...fastSettings, accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: secret, sessionToken: 'FwoGZXIvYXdzEXAMPLETOKEN' });
    launches();
    const record = newRecord();
    const host = await provider.checkout(args(), { record, index: 0, count: 1 }, testHostContext(t, record));
    // The client really got the credentials (from settings, not the default chain)...
    const creds = await ec2Mock.commandCalls(RunInstancesCommand)[0]!.thisValue.config.credentials();
    expect(creds.secretAccessKey).toBe(secret);
    // ...but nothing the Broker stores or prints holds them.
    readyRecord(t, record, host);
    const stored = JSON.stringify([...t.records.values()]);
    for (const text of [stored, JSON.stringify(host), t.logLines.join('\n')]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain('FwoGZXIvYXdzEXAMPLETOKEN');
    }
    ec2Mock.on(TerminateInstancesCommand).rejects(awsError('AuthFailure', `signature mismatch for key ${secret}`));
    const error = (await provider.release({ ...record, providerId: 'i-x' }, testHostContext(t, record)).catch((e: unknown) => e)) as ProviderError;
    expect(error.message).toContain('AuthFailure');
    expect(error.message).not.toContain(secret);
    expect(error.message).toMatch(/check the credentials/);
  });

  it('maps a topology host: os → image, group → instance type, network → subnet, keypair', () => {
    const mapped = ec2.fromTopology!(
      { name: 'ipa1', groups: ['ipaserver'], os: 'fedora-40', network: 'ci', args: { spot: true }, role: 'master' },
      { images: { 'fedora-40': 'ami-0fedora' }, flavors: { ipaserver: 't3.large', default: 't3.micro' }, networks: { ci: 'subnet-ci' }, keypair: 'ci-key' },
    );
    expect(mapped).toEqual({ name: 'ipa1', image: 'ami-0fedora', instanceType: 't3.large', subnet: 'subnet-ci', keyName: 'ci-key', spot: true });
    expect(ec2.args.safeParse(mapped).success).toBe(true);
  });

  it('rejects unknown arguments and a missing image with the key named', () => {
    const unknown = ec2.args.safeParse({ image: AMI, flavor: 'm5.large' });
    expect(unknown.success).toBe(false);
    expect(JSON.stringify(unknown.error?.issues)).toContain('flavor');
    expect(ec2.args.safeParse({ instanceType: 't3.micro' }).error?.issues[0]?.path).toEqual(['image']);
  });
});
