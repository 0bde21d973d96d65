import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expectTypeOf, it } from 'vitest';
import { Broker, Host, type HostGroup, type Result } from '../lib/index.js';

// Type-level tests: these assertions are checked by `tsc --noEmit` (part of npm test) and vitest.
describe('public types', () => {
  it('checkout without count gives a Host, with count a HostGroup, with hostClass that class', () => {
    const broker = new Broker({ directory: mkdtempSync(join(tmpdir(), 'hb-types-')) });
    class MyHost extends Host {
      hello(): string {
        return this.name;
      }
    }
    expectTypeOf(() => broker.checkout({ provider: 'local' })).returns.toEqualTypeOf<Promise<Host>>();
    expectTypeOf(() => broker.checkout({ provider: 'local', count: 3 })).returns.toEqualTypeOf<Promise<HostGroup<Host>>>();
    expectTypeOf(() => broker.checkout({ provider: 'local', hostClass: MyHost })).returns.toEqualTypeOf<Promise<MyHost>>();
    expectTypeOf(() => broker.checkout({ nick: 'anything', count: 2 })).returns.toEqualTypeOf<Promise<HostGroup<Host>>>();
    expectTypeOf<Host['execute']>().returns.toEqualTypeOf<Promise<Result>>();
  });

  it('provider arguments are typed by provider name', () => {
    const broker = new Broker({ directory: mkdtempSync(join(tmpdir(), 'hb-types-')) });
    // @ts-expect-error: `local` takes no `image`
    void (() => broker.checkout({ provider: 'local', image: 'x' }));
    // @ts-expect-error: `files` is a map of strings
    void (() => broker.checkout({ provider: 'local', files: { a: 1 } }));
    // @ts-expect-error: not a provider
    void (() => broker.checkout({ provider: 'no-such-provider' }));
  });
});
