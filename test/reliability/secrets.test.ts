/**
 * Secrets: a password, a token and a private key given to a checkout (arguments, settings,
 * provider data, a provider's error text) never reach the inventory file, its backups, the log,
 * or an error message.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { afterAll, expect, it } from 'vitest';
import { Broker, type CheckoutRequest } from '../../lib/broker/index.js';
import { BrokerError } from '../../lib/errors.js';
import { defineProvider, type ProviderImplementation } from '../../lib/provider.js';
import { registerSecret } from '../../lib/secrets.js';
import { reportFigures, tempBrokerDir } from './util.js';

const PASSWORD = 'pw-Secr3t-9f8e7d6c';
const TOKEN = 'tok-Secr3t-1a2b3c4d5e';
const PRIVATE_KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAASecr3tKeyMaterial\n-----END OPENSSH PRIVATE KEY-----';
const SECRETS = [PASSWORD, TOKEN, 'Secr3tKeyMaterial'];

const dir = await tempBrokerDir('hb-secrets-');
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const Args = z.strictObject({
  password: z.string().optional(),
  apiToken: z.string().optional(),
  privateKey: z.string().optional(),
  fail: z.boolean().optional(),
});
const impl: ProviderImplementation<z.output<typeof Args>> = {
  async checkout(args, { record }, ctx) {
    // A provider registers what it holds (as the real ones do) and logs with it.
    registerSecret(args.apiToken);
    registerSecret(args.password);
    ctx.logger.info(`logging in with token ${args.apiToken} and password ${args.password}`, { password: args.password, key: args.privateKey });
    if (args.fail) throw new Error(`the service refused token ${args.apiToken} (password ${args.password})`);
    return {
      hostname: 'h',
      providerId: record.id,
      connection: { kind: 'provider' },
      data: { apiToken: args.apiToken, nested: { password: args.password }, banner: args.privateKey },
    };
  },
  async release() {},
};
const provider = defineProvider({ name: 'vault', description: 'test: takes secrets', args: Args, load: async () => impl as ProviderImplementation });

it('never writes a secret to the inventory, its backups, the log or an error message', async () => {
  const lines: string[] = [];
  const sink = (m: string, f?: Record<string, unknown>): void => void lines.push(m + (f ? JSON.stringify(f) : ''));
  const broker = new Broker({
    directory: dir,
    providers: [provider],
    logger: { error: sink, warn: sink, info: sink, debug: sink },
    settings: { logLevel: 'debug', providers: { vault: { password: PASSWORD } } },
  });
  const request = { provider: 'vault', password: PASSWORD, apiToken: TOKEN, privateKey: PRIVATE_KEY } as unknown as CheckoutRequest & { count?: undefined };
  const host = await broker.checkout(request);
  const group = await broker.checkout({ ...request, count: 2 } as unknown as CheckoutRequest & { count: number });
  await broker.keep(group, `kept; the token was ${TOKEN}`);
  const failure = await broker.checkout({ ...request, fail: true } as unknown as CheckoutRequest).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(BrokerError.isInstance(failure)).toBe(true);
  const messages = [(failure as Error).message, JSON.stringify((failure as BrokerError).toJSON())];

  const files = (await readdir(dir)).filter((f) => f.startsWith('inventory.json'));
  const texts = await Promise.all(files.map((f) => readFile(join(dir, f), 'utf8')));
  const records = JSON.stringify(await broker.inventory());
  await host.checkin();
  await broker.checkin({ all: true });
  const places: Record<string, string> = { inventory: texts.join('\n'), records, log: lines.join('\n'), errors: messages.join('\n') };
  let checks = 0;
  for (const [where, text] of Object.entries(places)) {
    for (const secret of SECRETS) {
      expect(text, `${where} holds a secret`).not.toContain(secret);
      checks++;
    }
  }
  // What was logged and kept is still useful: the text is there with the secret masked.
  expect(lines.join('\n')).toMatch(/logging in with token \[redacted\]/);
  expect((failure as Error).message).toMatch(/the service refused token \[redacted\]/);
  reportFigures('secrets', { secrets: SECRETS.length, placesChecked: Object.keys(places).length, checks, inventoryFiles: files.length });
});
