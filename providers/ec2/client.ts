/**
 * EC2 client creation and the one call path every EC2 request goes through: bounded retries with
 * backoff for throttling and capacity errors, and AWS errors turned into ProviderErrors.
 * @module
 */
import type { EC2Client } from '@aws-sdk/client-ec2';
import { ProviderError, UserInputError, importOptional } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { registerSecret, scrub } from '../../lib/secrets.js';
import { toMs } from '../../lib/settings.js';
import type { Ec2Instance } from './definition.js';

/** The EC2 SDK module, loaded on first use. */
export type Ec2Sdk = typeof import('@aws-sdk/client-ec2');

/** Loads `@aws-sdk/client-ec2` lazily. */
export function loadEc2Sdk(): Promise<Ec2Sdk> {
  return importOptional('@aws-sdk/client-ec2', 'The ec2 provider', () => import('@aws-sdk/client-ec2'));
}

/** Error codes worth another attempt after a pause. */
const THROTTLING = new Set(['RequestLimitExceeded', 'Throttling', 'ThrottlingException', 'TooManyRequestsException']);
const CAPACITY = new Set(['InsufficientInstanceCapacity', 'InsufficientHostCapacity', 'InsufficientReservedInstanceCapacity', 'InsufficientCapacity']);

/** AWS error code of an SDK error (`name` on SDK v3 errors). */
export function awsCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { name?: string; Code?: string; code?: string };
  return e.Code ?? e.code ?? e.name;
}

/** Whether a failed call may succeed when tried again. */
export function isRetryable(error: unknown): 'throttling' | 'capacity' | 'server' | undefined {
  const code = awsCode(error);
  if (code && THROTTLING.has(code)) return 'throttling';
  if (code && CAPACITY.has(code)) return 'capacity';
  const e = error as { $fault?: string; $metadata?: { httpStatusCode?: number } };
  if (e?.$fault === 'server' || (e?.$metadata?.httpStatusCode ?? 0) >= 500) return 'server';
  return undefined;
}

/** Builds an EC2 client from instance settings; credentials come from the SDK default chain unless given. */
export async function createEc2Client(settings: Ec2Instance, region: string | undefined): Promise<EC2Client> {
  const sdk = await loadEc2Sdk();
  registerSecret(settings.secretAccessKey);
  registerSecret(settings.sessionToken);
  if ((settings.accessKeyId === undefined) !== (settings.secretAccessKey === undefined)) {
    throw new UserInputError(
      '[ec2] settings give only one of accessKeyId and secretAccessKey; give both, or neither to use the SDK default chain (environment, profile, instance role).',
    );
  }
  return new sdk.EC2Client({
    ...((region ?? settings.region) ? { region: region ?? settings.region } : {}),
    ...(settings.profile ? { profile: settings.profile } : {}),
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    ...(settings.accessKeyId && settings.secretAccessKey
      ? {
          credentials: {
            accessKeyId: settings.accessKeyId,
            secretAccessKey: settings.secretAccessKey,
            ...(settings.sessionToken ? { sessionToken: settings.sessionToken } : {}),
          },
        }
      : {}),
    // Retries are ours (bounded, logged, capacity-aware); the SDK's would multiply them.
    maxAttempts: 1,
  });
}

/** Retry policy of one provider instance. */
export interface RetryPolicy {
  attempts: number;
  delayMs: number;
  maxDelayMs: number;
}

/** The retry policy from instance settings. */
export function retryPolicy(settings: Ec2Instance): RetryPolicy {
  return { attempts: settings.attempts, delayMs: toMs(settings.retryDelay), maxDelayMs: toMs(settings.retryMaxDelay) };
}

/** Sleeps `ms`, or rejects when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted');
}

/** Options of one {@link callEc2}. */
export interface CallOptions {
  /** What the call does, for messages: "start an instance". */
  what: string;
  policy: RetryPolicy;
  logger: Logger;
  signal?: AbortSignal;
  /** Called before a retry of a capacity error (e.g. to move to another subnet). */
  onCapacity?(attempt: number): void;
}

/**
 * Runs `call` with bounded exponential backoff (full jitter) for throttling, capacity and server
 * errors; any other error, or the last one, becomes a ProviderError with the AWS code.
 */
export async function callEc2<T>(call: (attempt: number) => Promise<T>, options: CallOptions): Promise<T> {
  const { policy } = options;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(attempt);
    } catch (error) {
      if (options.signal?.aborted) throw error;
      const kind = isRetryable(error);
      if (!kind || attempt >= policy.attempts) throw toProviderError(error, options.what, attempt);
      const cap = Math.min(policy.maxDelayMs, policy.delayMs * 2 ** (attempt - 1));
      const delay = Math.round(cap / 2 + (Math.random() * cap) / 2);
      options.logger.info(`ec2: ${options.what} failed (${awsCode(error)}), attempt ${attempt} of ${policy.attempts}; retrying in ${delay} ms`);
      if (kind === 'capacity') options.onCapacity?.(attempt);
      await sleep(delay, options.signal);
    }
  }
}

/** An AWS SDK error as a ProviderError carrying the AWS code and message (scrubbed). */
export function toProviderError(error: unknown, what: string, attempts = 1): ProviderError {
  if (error instanceof ProviderError) return error;
  const code = awsCode(error);
  const message = scrub(error instanceof Error ? error.message : String(error));
  const kind = isRetryable(error);
  const tried = attempts > 1 ? ` after ${attempts} attempts` : '';
  const hint =
    kind === 'capacity'
      ? 'AWS has no capacity for this instance type here right now: try another instance type or subnet (availability zone), or later.'
      : kind === 'throttling'
        ? 'the account is being throttled: lower checkout.concurrency or try again later.'
        : code === 'UnauthorizedOperation' || code === 'AuthFailure'
          ? 'check the credentials (profile, environment, instance role) and their IAM permissions.'
          : 'check the arguments and the AWS message above.';
  return new ProviderError('ec2', `could not ${what}${tried}: ${code ? `${code}: ` : ''}${message} — ${hint}`, {
    cause: error,
    ...(code ? { status: code } : {}),
    retryable: kind !== undefined,
  });
}
