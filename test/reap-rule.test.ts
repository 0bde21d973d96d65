/**
 * The Broker's reap rule (lib/broker/reap-rule.ts): which resources a provider's inventory()
 * reports are released. The same rule for every provider.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { reapable } from '../lib/broker/reap-rule.js';
import type { DiscoveredHost } from '../lib/provider.js';

const NOW = Date.parse('2026-06-01T12:00:00.000Z');
const iso = (offsetMs: number) => new Date(NOW + offsetMs).toISOString();
const host = (fields: Partial<DiscoveredHost>): DiscoveredHost => ({ hostname: 'h', connection: { kind: 'provider' }, brokerId: 'me', ...fields });
const rule = (found: DiscoveredHost[], known: string[] = [], graceMs = 0) =>
  reapable(found, { brokerId: 'me', isKnown: (id) => known.includes(id), now: NOW, graceMs }).map((r) => [r.host.id, r.reason]);

describe('the reap rule', () => {
  it('picks tagged resources whose record is unknown, and known ones whose lease has passed', () => {
    const found = [
      host({ id: 'lost' }),
      host({ id: 'kept', leaseExpires: iso(60_000) }),
      host({ id: 'old', leaseExpires: iso(-1) }),
      host({ id: 'lost-and-old', leaseExpires: iso(-60_000) }),
      host({ id: 'no-lease' }),
    ];
    expect(rule(found, ['kept', 'old', 'no-lease'])).toEqual([
      ['lost', 'orphaned'],
      ['old', 'expired'],
      ['lost-and-old', 'expired'],
    ]);
  });

  it('never counts untagged resources, nor those of another broker or of none', () => {
    const found = [
      host({ leaseExpires: iso(-1) }),
      host({ id: 'theirs', brokerId: 'someone-else' }),
      host({ id: 'anyone', brokerId: undefined, leaseExpires: iso(-1) }),
    ];
    expect(rule(found)).toEqual([]);
  });

  it('leaves young resources of unknown records alone for the grace, but not expired ones', () => {
    const found = [
      host({ id: 'young', createdAt: iso(-5_000) }),
      host({ id: 'older', createdAt: iso(-60_000) }),
      host({ id: 'ageless' }),
      host({ id: 'young-but-expired', createdAt: iso(-5_000), leaseExpires: iso(-1) }),
    ];
    expect(rule(found, [], 30_000)).toEqual([
      ['older', 'orphaned'],
      ['ageless', 'orphaned'],
      ['young-but-expired', 'expired'],
    ]);
    expect(rule(found, [], 0).map(([id]) => id)).toEqual(['young', 'older', 'ageless', 'young-but-expired']);
  });

  it('ignores a lease it cannot read', () => {
    expect(rule([host({ id: 'odd', leaseExpires: 'next tuesday' })], ['odd'])).toEqual([]);
  });

  it('for any inventory: picks only tagged resources of this broker, orphans only of unknown records, expired only past their lease', () => {
    const arbitraryHost = fc.record({
      id: fc.option(fc.constantFrom('a', 'b', 'c', 'd'), { nil: undefined }),
      brokerId: fc.option(fc.constantFrom('me', 'other'), { nil: undefined }),
      leaseExpires: fc.option(fc.integer({ min: -3_600_000, max: 3_600_000 }).map(iso), { nil: undefined }),
      createdAt: fc.option(fc.integer({ min: -3_600_000, max: 0 }).map(iso), { nil: undefined }),
    });
    fc.assert(
      fc.property(
        fc.array(arbitraryHost, { maxLength: 12 }),
        fc.subarray(['a', 'b', 'c', 'd']),
        fc.integer({ min: 0, max: 3_600_000 }),
        (fields, known, graceMs) => {
          const found = fields.map((f) => host(f as Partial<DiscoveredHost>));
          const picked = reapable(found, { brokerId: 'me', isKnown: (id) => known.includes(id), now: NOW, graceMs });
          for (const { host: h, reason } of picked) {
            expect(h.id).toBeTruthy();
            expect(h.brokerId).toBe('me');
            if (reason === 'orphaned') {
              expect(known).not.toContain(h.id);
              if (h.createdAt && graceMs > 0) expect(NOW - Date.parse(h.createdAt)).toBeGreaterThanOrEqual(graceMs);
            } else expect(Date.parse(h.leaseExpires!)).toBeLessThan(NOW);
          }
          // Nothing that meets the rule is missed.
          const missed = found.filter((h) => !picked.some((p) => p.host === h));
          for (const h of missed) {
            const mine = !!h.id && h.brokerId === 'me';
            const expired = !!h.leaseExpires && Date.parse(h.leaseExpires) < NOW;
            const young = graceMs > 0 && !!h.createdAt && NOW - Date.parse(h.createdAt) < graceMs;
            expect(mine && (expired || (!known.includes(h.id!) && !young))).toBe(false);
          }
        },
      ),
    );
  });
});
