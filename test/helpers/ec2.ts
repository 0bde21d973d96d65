/**
 * Test helpers for the ec2 provider: a ProviderContext over a temp inventory, intent records as
 * the Broker writes them, and EC2 API responses shaped like the real service's.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Instance, Reservation } from '@aws-sdk/client-ec2';
import { Inventory } from '../../lib/inventory.js';
import { createLogger, type Logger } from '../../lib/logger.js';
import type { ProviderContext } from '../../lib/provider.js';
import type { HostRecord } from '../../lib/records.js';
import { parseSettings } from '../../lib/settings.js';

/** A context for calling a provider implementation directly, plus cleanup. */
export interface TestContext {
  ctx: ProviderContext;
  inventory: Inventory;
  directory: string;
  /** Lines the logger wrote (level debug), to check that no secret is logged. */
  logLines: string[];
  cleanup(): Promise<void>;
}

/** Builds a ProviderContext for `provider` with the given instance settings. */
export async function makeContext(provider: string, instanceSettings: Record<string, unknown>, brokerId = 'broker-test-1'): Promise<TestContext> {
  const directory = await mkdtemp(join(tmpdir(), `hb-${provider}-`));
  const inventory = new Inventory(directory);
  const logLines: string[] = [];
  const logger: Logger = createLogger('debug', (line) => logLines.push(line));
  const settings = parseSettings({ ssh: { username: 'fallback-user' } }, [provider]);
  const ctx: ProviderContext = {
    provider,
    instance: 'default',
    instanceSettings,
    settings,
    directory,
    brokerId,
    owner: 'alice',
    logger,
    inventory,
    signal: new AbortController().signal,
  };
  return { ctx, inventory, directory, logLines, cleanup: () => rm(directory, { recursive: true, force: true }) };
}

let counter = 0;

/** An intent record as the Broker writes it before calling the provider, added to the inventory. */
export async function intentRecord(t: TestContext, fields: Partial<HostRecord> = {}): Promise<HostRecord> {
  counter += 1;
  const record: HostRecord = {
    id: `rec${counter.toString().padStart(4, '0')}`,
    name: `host-${counter}`,
    hostname: '',
    provider: t.ctx.provider,
    instance: t.ctx.instance,
    state: 'provisioning',
    recipe: { provider: t.ctx.provider, args: {} },
    owner: t.ctx.owner,
    brokerId: t.ctx.brokerId,
    createdAt: new Date().toISOString(),
    leaseExpires: new Date(Date.now() + 3600_000).toISOString(),
    data: {},
    ...fields,
  };
  await t.inventory.add(record);
  return record;
}

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
