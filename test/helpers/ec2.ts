/**
 * Test helpers for the ec2 provider: EC2 API responses shaped like the real service's, and a
 * small stateful EC2 for the conformance suite. Contexts and records come from hostbroker/testing.
 */
import {
  CreateTagsCommand,
  type CreateTagsCommandInput,
  DescribeInstancesCommand,
  type DescribeInstancesCommandInput,
  type EC2Client,
  type Instance,
  type Reservation,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  TerminateInstancesCommand,
  type TerminateInstancesCommandInput,
} from '@aws-sdk/client-ec2';
import type { AwsClientStub } from 'aws-sdk-client-mock';

/** An SDK v3 service error as the EC2 client throws it (name = AWS error code). */
export function awsError(code: string, message: string, status = 400): Error {
  const error = new Error(message) as Error & { $fault: string; $metadata: Record<string, unknown>; Code: string };
  error.name = code;
  error.Code = code;
  error.$fault = status >= 500 ? 'server' : 'client';
  error.$metadata = { httpStatusCode: status, requestId: '6f4c1a2e-0c1d-4b3e-9a55-1f0f6c3b8a21', attempts: 1 };
  return error;
}

/** An instance as DescribeInstances reports it. */
export function instance(id: string, fields: Partial<Instance> = {}): Instance {
  return {
    InstanceId: id,
    ImageId: 'ami-0abcdef1234567890',
    InstanceType: 't3.micro',
    KeyName: 'ci-key',
    LaunchTime: new Date('2026-01-05T10:00:00.000Z'),
    Placement: { AvailabilityZone: 'eu-west-1a', Tenancy: 'default' },
    PrivateDnsName: 'ip-10-0-1-23.eu-west-1.compute.internal',
    PrivateIpAddress: '10.0.1.23',
    State: { Code: 0, Name: 'pending' },
    SubnetId: 'subnet-0aaa1111',
    VpcId: 'vpc-0bbb2222',
    Architecture: 'x86_64',
    RootDeviceType: 'ebs',
    Tags: [],
    ...fields,
  };
}

/** A DescribeInstances page holding `instances`. */
export function reservation(...instances: Instance[]): { Reservations: Reservation[] } {
  return { Reservations: [{ ReservationId: 'r-0123456789abcdef0', OwnerId: '123456789012', Instances: instances }] };
}

/** Instance settings that keep tests fast (tiny backoff and poll interval). */
export const fastSettings = {
  region: 'eu-west-1',
  pollInterval: 1,
  retryDelay: 1,
  retryMaxDelay: 5,
  runningTimeout: 200,
} as const;

/**
 * A small stateful EC2 behind aws-sdk-client-mock (RunInstances, DescribeInstances with tag and
 * state filters, TerminateInstances, CreateTags), for the Broker-level conformance suite.
 * Instances start `pending` and are `running` from the next describe on.
 */
export class FakeEc2 {
  readonly instances = new Map<string, Instance>();
  private next = 1;

  /** Wires the fake into a mock of EC2Client. */
  install(mock: AwsClientStub<EC2Client>): void {
    mock.on(RunInstancesCommand).callsFake((input: RunInstancesCommandInput) => this.run(input));
    mock.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => this.describe(input));
    mock.on(TerminateInstancesCommand).callsFake((input: TerminateInstancesCommandInput) => this.terminate(input));
    mock.on(CreateTagsCommand).callsFake((input: CreateTagsCommandInput) => this.tag(input));
  }

  /** Whether an instance exists and is not terminated. */
  live(id: string | undefined): boolean {
    const state = id ? this.instances.get(id)?.State?.Name : undefined;
    return state !== undefined && state !== 'terminated';
  }

  private run(input: RunInstancesCommandInput) {
    const id = `i-${(this.next++).toString(16).padStart(17, '0')}`;
    const n = this.next;
    const tags = input.TagSpecifications?.find((s) => s.ResourceType === 'instance')?.Tags ?? [];
    const created = instance(id, { ImageId: input.ImageId ?? 'ami-0', Tags: tags, PrivateIpAddress: `10.0.1.${n}`, LaunchTime: new Date() });
    this.instances.set(id, created);
    return { Instances: [created] };
  }

  private describe(input: DescribeInstancesCommandInput) {
    const matches = [...this.instances.values()].filter((i) => {
      if (input.InstanceIds && !input.InstanceIds.includes(i.InstanceId!)) return false;
      for (const f of input.Filters ?? []) {
        const values = f.Values ?? [];
        if (f.Name === 'instance-state-name' && !values.includes(i.State!.Name!)) return false;
        if (f.Name?.startsWith('tag:') && !i.Tags?.some((t) => t.Key === f.Name!.slice(4) && values.includes(t.Value!))) return false;
      }
      return true;
    });
    if (input.InstanceIds && matches.length === 0)
      throw awsError('InvalidInstanceID.NotFound', `The instance IDs '${input.InstanceIds.join(', ')}' do not exist`);
    const out = reservation(...matches.map((i) => structuredClone(i)));
    for (const i of matches) {
      if (i.State!.Name === 'pending')
        Object.assign(i, { State: { Code: 16, Name: 'running' }, PublicIpAddress: `203.0.113.${i.PrivateIpAddress!.split('.')[3]}` });
    }
    return out;
  }

  private terminate(input: TerminateInstancesCommandInput) {
    const ids = input.InstanceIds ?? [];
    const missing = ids.filter((id) => !this.instances.has(id));
    if (missing.length) throw awsError('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
    for (const id of ids) this.instances.get(id)!.State = { Code: 48, Name: 'terminated' };
    return { TerminatingInstances: ids.map((InstanceId) => ({ InstanceId, CurrentState: { Code: 32, Name: 'shutting-down' } })) };
  }

  private tag(input: CreateTagsCommandInput) {
    for (const id of input.Resources ?? []) {
      const i = this.instances.get(id);
      if (!i) throw awsError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
      const keys = new Set(input.Tags?.map((t) => t.Key));
      i.Tags = [...(i.Tags ?? []).filter((t) => !keys.has(t.Key)), ...(input.Tags ?? [])];
    }
    return {};
  }
}
