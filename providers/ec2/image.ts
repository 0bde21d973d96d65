/**
 * Resolves the `image` argument to an AMI id: an AMI id as is, `ssm:<parameter>` through SSM
 * Parameter Store, anything else as an image name (or Name tag) with the newest match winning.
 * @module
 */
import type { EC2Client, Image } from '@aws-sdk/client-ec2';
import { ProviderError, importOptional } from '../../lib/errors.js';
import { type CallOptions, callEc2, loadEc2Sdk } from './client.js';

/** Options for {@link resolveImage}. */
export interface ResolveImageOptions extends Omit<CallOptions, 'what'> {
  client: EC2Client;
  region: string | undefined;
  owners: string[];
  /** Builds an SSM client for the region (tests may pass their own). */
  ssmClient?: () => Promise<import('@aws-sdk/client-ssm').SSMClient>;
}

/** Returns the AMI id `image` refers to. */
export async function resolveImage(image: string, options: ResolveImageOptions): Promise<string> {
  if (/^ami-[0-9a-f]+$/.test(image)) return image;
  if (image.startsWith('ssm:')) return fromSsm(image.slice(4), options);
  return byName(image, options);
}

async function fromSsm(name: string, options: ResolveImageOptions): Promise<string> {
  const ssm = await importOptional('@aws-sdk/client-ssm', 'The ec2 provider (images given as ssm: parameters)', () => import('@aws-sdk/client-ssm'));
  const client = options.ssmClient
    ? await options.ssmClient()
    : new ssm.SSMClient(options.region ? { region: options.region, maxAttempts: 1 } : { maxAttempts: 1 });
  const out = await callEc2(() => client.send(new ssm.GetParameterCommand({ Name: name }), { abortSignal: options.signal }), {
    ...options,
    what: `read the SSM parameter ${name}`,
  });
  const value = out.Parameter?.Value;
  if (!value || !/^ami-[0-9a-f]+$/.test(value)) {
    throw new ProviderError(
      'ec2',
      `the SSM parameter ${name} holds ${value ? JSON.stringify(value) : 'no value'}, not an AMI id; use a parameter that names an image (e.g. /aws/service/debian/release/12/latest/amd64).`,
    );
  }
  return value;
}

async function byName(name: string, options: ResolveImageOptions): Promise<string> {
  const sdk = await loadEc2Sdk();
  const search = async (filter: string): Promise<Image[]> => {
    const out = await callEc2(
      () =>
        options.client.send(
          new sdk.DescribeImagesCommand({
            Owners: options.owners,
            Filters: [
              { Name: filter, Values: [name] },
              { Name: 'state', Values: ['available'] },
            ],
          }),
          { abortSignal: options.signal },
        ),
      { ...options, what: `look up the image ${JSON.stringify(name)}` },
    );
    return out.Images ?? [];
  };
  let images = await search('name');
  if (images.length === 0) images = await search('tag:Name');
  const newest = images.filter((i) => i.ImageId).sort((a, b) => (b.CreationDate ?? '').localeCompare(a.CreationDate ?? ''))[0];
  if (!newest?.ImageId) {
    throw new ProviderError(
      'ec2',
      `no available image is named (or tagged Name=) ${JSON.stringify(name)} among owners ${options.owners.join(', ')}${options.region ? ` in ${options.region}` : ''}; give an AMI id, an ssm: parameter, or set imageOwners in the ec2 settings.`,
    );
  }
  return newest.ImageId;
}
