import { describe, expect, it } from 'vitest';
import { renderTemplate } from '../../hosts/config/templates.js';
import { UserInputError } from '../../lib/errors.js';

describe('templates (nunjucks, jinja2-compatible, strict about undefined names)', () => {
  it('renders variables, filters and jinja2 syntax', () => {
    expect(renderTemplate('{{ who | upper }} {{ items | join(",") }} {{ "x" if on else "y" }}', { who: 'ann', items: [1, 2], on: true })).toBe('ANN 1,2 x');
    expect(renderTemplate('{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}', { d: { a: 1, b: 2 } })).toBe('a=1;b=2;');
    expect(renderTemplate('{{ x if True else "no" }}', { x: 'yes' })).toBe('yes');
  });

  it('treats an undefined name in a truth test as false', () => {
    expect(renderTemplate('{% if debug %}on{% else %}off{% endif %}', {})).toBe('off');
    expect(renderTemplate('{% if not debug and not verbose %}quiet{% endif %}', {})).toBe('quiet');
    expect(renderTemplate('{% if opts.debug %}on{% endif %}-', {})).toBe('-');
    expect(renderTemplate('{% if debug is defined %}d{% else %}u{% endif %}', {})).toBe('u');
    expect(renderTemplate('{{ port | default(8080) }}', {})).toBe('8080');
    expect(renderTemplate('{{ "a" if debug else "b" }}', {})).toBe('b');
  });

  it('fails on an undefined name anywhere else, naming it and its line', () => {
    expect(() => renderTemplate('line one\nport={{ port }}\n', {}, { name: 'app.conf' })).toThrow(/app\.conf .*`port` \(line 2\)/);
    expect(() => renderTemplate('{% for u in users %}{{ u }}{% endfor %}', {})).toThrow(/`users`/);
    expect(() => renderTemplate('{{ count + 1 }}', {})).toThrow(/`count`/);
    expect(() => renderTemplate('{% if mode == "x" %}y{% endif %}', {})).toThrow(/`mode`/);
    expect(() => renderTemplate('{{ port }}', {})).toThrow(UserInputError);
  });

  it('fails when printing a missing attribute, and on syntax errors', () => {
    expect(() => renderTemplate('{{ target.nope }}', { target: {} }, { name: 't1' })).toThrow(/t1 prints a value that is undefined/);
    expect(() => renderTemplate('{{ oops', {}, { name: 't2' })).toThrow(/t2 is not a valid template/);
  });

  it('knows names the template binds itself', () => {
    expect(renderTemplate('{% set a = 2 %}{{ a }}{% for i in [1] %}{{ i }}{{ loop.index }}{% endfor %}', {})).toBe('211');
    expect(renderTemplate('{% macro m(p, q=1) %}{{ p }}{{ q }}{% endmacro %}{{ m(3) }}', {})).toBe('31');
    expect(renderTemplate('{{ range(3) | join("") }}', {})).toBe('012');
  });
});
