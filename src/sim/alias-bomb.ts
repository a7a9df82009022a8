/**
 * A hostile policy file: a YAML alias bomb, 9^9 strings once expanded. The policy loader must
 * refuse it quickly and in bounded memory; the tests check the refusal, the benchmark times it.
 */
export const ALIAS_BOMB = [
  'version: 1',
  'description: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]',
  'x1: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
  'x2: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
  'x3: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
  'x4: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]',
  'x5: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]',
  'x6: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]',
  'x7: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]',
  'x8: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]',
  '',
].join('\n');
