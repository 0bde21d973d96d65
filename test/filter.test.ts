import { describe, expect, it } from 'vitest';
import { UserInputError } from '../lib/errors.js';
import { applyFilter, parseFilter } from '../lib/filter.js';

const hosts = [
  { name: 'web-1', hostname: 'web-1.example.com', provider: 'container', recipe: { args: { image: 'busybox:latest' } } },
  { name: 'db-1', hostname: '10.0.0.5', provider: 'ec2', recipe: { args: { image: 'ami-123' } } },
  { name: 'web-2', hostname: 'web-2.lab', provider: 'container', recipe: { args: { image: 'debian:12' } } },
];
const names = (filter: string) => applyFilter(hosts, filter).map((h) => h.name);

describe('filters in the seed syntax', () => {
  it('supports contains, equals, starts with, ends with, and negation', () => {
    expect(names('name<web')).toEqual(['web-1', 'web-2']);
    expect(names('provider=ec2')).toEqual(['db-1']);
    expect(names('hostname{10.')).toEqual(['db-1']);
    expect(names('hostname}.lab')).toEqual(['web-2']);
    expect(names('provider!=container')).toEqual(['db-1']);
    expect(names('name!<web')).toEqual(['db-1']);
    expect(names('hostname!{web')).toEqual(['db-1']);
  });

  it('joins clauses with AND and reaches nested fields with dots', () => {
    expect(names('name<web,recipe.args.image{debian')).toEqual(['web-2']);
    expect(names('recipe.args.image}latest')).toEqual(['web-1']);
    expect(names('no.such.field=x')).toEqual([]);
  });

  it('takes a predicate function too', () => {
    expect(applyFilter(hosts, (h) => h.provider === 'ec2').map((h) => h.name)).toEqual(['db-1']);
  });

  it('rejects malformed filters with a message that shows the syntax', () => {
    for (const bad of ['', 'name', '<web', 'na me<x', 'name~x']) {
      expect(() => parseFilter(bad)).toThrow(UserInputError);
    }
    expect(() => parseFilter('name')).toThrow(/key<value \(contains\)/);
  });
});
