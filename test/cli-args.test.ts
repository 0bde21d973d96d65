/**
 * Provider options on the command line, typed by the provider's schema.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseProviderOptions } from '../lib/cli/args.js';
import { UserInputError } from '../lib/errors.js';
import { describeArgs } from '../lib/requests.js';

const docs = describeArgs(
  z.strictObject({
    image: z.string(),
    instanceType: z.string().optional(),
    cpus: z.number().int().optional(),
    spot: z.union([z.boolean(), z.strictObject({ maxPrice: z.string() })]).optional(),
    subnet: z.union([z.string(), z.array(z.string())]).optional(),
    securityGroups: z.array(z.string()).optional(),
    labels: z.record(z.string(), z.string()).optional(),
    debug: z.boolean().optional(),
  }),
);

const parse = (tokens: string[]) => parseProviderOptions(tokens, docs, 'provider `test`');

describe('provider options on the command line', () => {
  it('types values by the schema and accepts kebab-case, = and flags', () => {
    expect(parse(['--image', '42', '--instance-type=t3.micro', '--cpus', '4', '--debug', '--spot', '{"maxPrice":"0.1"}'])).toEqual({
      image: '42', // a string argument stays a string even when it looks like a number
      instanceType: 't3.micro',
      cpus: 4,
      debug: true,
      spot: { maxPrice: '0.1' },
    });
    expect(parse(['--no-debug', '--spot', 'true'])).toEqual({ debug: false, spot: true });
  });

  it('builds lists from repeats or JSON, and maps from JSON or key=value pairs', () => {
    expect(parse(['--security-groups', 'sg-1', '--security-groups', 'sg-2'])).toEqual({ securityGroups: ['sg-1', 'sg-2'] });
    expect(parse(['--securityGroups', '["a","b"]', '--subnet', 'one'])).toEqual({ securityGroups: ['a', 'b'], subnet: 'one' });
    expect(parse(['--labels', 'arch=arm64,rack=a'])).toEqual({ labels: { arch: 'arm64', rack: 'a' } });
  });

  it('reads a JSON or YAML file as the value of an object option', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hb-args-'));
    const file = join(dir, 'labels.yaml');
    await writeFile(file, 'arch: x86_64\n');
    expect(parse(['--labels', file])).toEqual({ labels: { arch: 'x86_64' } });
    await rm(dir, { recursive: true, force: true });
  });

  it('says which option is wrong and why', () => {
    const cases: Array<[string[], RegExp]> = [
      [['--colour', 'red'], /unknown option --colour for provider `test`; accepted: --image, --instanceType/],
      [['--cpus', 'four'], /option --cpus takes a number \(integer\), not "four"/],
      [['--image'], /option --image needs a value \(string\)/],
      [['--debug', 'maybe'], /option --debug takes true or false, not "maybe"/],
      [['--image', 'a', '--image', 'b'], /option --image was given twice/],
      [['stray'], /unexpected argument "stray"/],
      [['--labels', '{oops'], /option --labels: the value is neither JSON nor YAML/],
    ];
    for (const [tokens, message] of cases) {
      expect(() => parse(tokens), tokens.join(' ')).toThrow(UserInputError);
      expect(() => parse(tokens), tokens.join(' ')).toThrow(message);
    }
  });
});
