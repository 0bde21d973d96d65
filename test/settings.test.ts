import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SettingsError } from '../lib/errors.js';
import { envOverrides, loadSettings, resolveInstance, toMs } from '../lib/settings.js';

const dir = () => mkdtemp(join(tmpdir(), 'hb-settings-'));
const providers = ['local', 'container'];

describe('settings', () => {
  it('reads broker_settings.yaml, fills defaults, and moves provider sections under providers', async () => {
    const d = await dir();
    await writeFile(
      join(d, 'broker_settings.yaml'),
      'ssh:\n  username: tester\ncontainer:\n  instances:\n    a: { socketPath: /a.sock }\n    b: { socketPath: /b.sock, default: true }\nnicks:\n  tiny: { provider: container, image: busybox }\n',
    );
    const s = loadSettings(d, { providerNames: providers, env: {} });
    expect(s.ssh.username).toBe('tester');
    expect(s.ssh.channelsPerConnection).toBe(5);
    expect(s.checkout.onPartialFailure).toBe('abort');
    expect(resolveInstance(s, 'container')).toEqual({ name: 'b', values: { socketPath: '/b.sock' } });
    expect(resolveInstance(s, 'container', 'a').values).toEqual({ socketPath: '/a.sock' });
    expect(s.nicks.tiny).toEqual({ provider: 'container', image: 'busybox' });
  });

  it('lets the environment override nested keys with BROKER_<section>__<key>, parsing values', async () => {
    const d = await dir();
    await writeFile(join(d, 'broker_settings.yaml'), 'ssh:\n  username: fromfile\n');
    const s = loadSettings(d, {
      providerNames: providers,
      env: { BROKER_ssh__username: 'fromenv', BROKER_SSH__port: '2222', BROKER_container__instances__x__socketPath: '/x.sock', BROKER_DIRECTORY: '/ignored' },
    });
    expect(s.ssh.username).toBe('fromenv');
    expect(s.ssh.port).toBe(2222);
    expect(resolveInstance(s, 'container', 'x').values).toEqual({ socketPath: '/x.sock' });
  });

  it('loads .env beside the settings, the real environment winning', async () => {
    const d = await dir();
    await writeFile(join(d, '.env'), 'BROKER_ssh__username=dotenv\nBROKER_ssh__port=2200\nHB_TEST_PASSWORD=s3cret-from-dotenv\n');
    const env: NodeJS.ProcessEnv = { BROKER_ssh__port: '2300' };
    const s = loadSettings(d, { providerNames: providers, env });
    expect(s.ssh.username).toBe('dotenv');
    expect(s.ssh.port).toBe(2300);
    expect(env.HB_TEST_PASSWORD).toBe('s3cret-from-dotenv');
  });

  it('names the key and the reason for a bad value, an unknown section, or two defaults', async () => {
    const d = await dir();
    await writeFile(join(d, 'broker_settings.yaml'), 'checkout:\n  onPartialFailure: sometimes\n');
    expect(() => loadSettings(d, { providerNames: providers, env: {} })).toThrow(/checkout\.onPartialFailure/);
    await writeFile(join(d, 'broker_settings.yaml'), 'contianer:\n  instances: {}\n');
    expect(() => loadSettings(d, { providerNames: providers, env: {} })).toThrow(/unknown key `contianer`.*container/);
    await writeFile(join(d, 'broker_settings.yaml'), 'container:\n  instances:\n    a: { default: true }\n    b: { default: true }\n');
    expect(() => loadSettings(d, { providerNames: providers, env: {} })).toThrow(/2 instances marked default \(a, b\)/);
    await writeFile(join(d, 'broker_settings.yaml'), 'ssh: [1, 2\n');
    expect(() => loadSettings(d, { providerNames: providers, env: {} })).toThrow(SettingsError);
    // An unknown tag is an error, not a value that silently became a string.
    await writeFile(join(d, 'broker_settings.yaml'), 'ssh:\n  username: !vault secret\n');
    expect(() => loadSettings(d, { providerNames: providers, env: {} })).toThrow(/not valid YAML: .*vault/);
    expect(() => envOverrides({ BROKER_nosuch__key: '1' }, providers)).toThrow(/`nosuch` is not a settings section/);
  });

  it('asks for a default when several instances exist and none is marked', async () => {
    const d = await dir();
    await writeFile(join(d, 'broker_settings.yaml'), 'container:\n  instances:\n    a: {}\n    b: {}\n');
    const s = loadSettings(d, { providerNames: providers, env: {} });
    expect(() => resolveInstance(s, 'container')).toThrow(/none is `default: true`/);
    expect(() => resolveInstance(s, 'container', 'c')).toThrow(/no instance `c`; known instances: a, b/);
  });

  it('understands durations', () => {
    expect(toMs('90s')).toBe(90_000);
    expect(toMs('1.5h')).toBe(5_400_000);
    expect(toMs(250)).toBe(250);
    expect(() => toMs('soon' as never)).toThrow(SettingsError);
  });
});
