/**
 * Glob patterns of policy `host.integrity.exceptions`: `*` matches within one path segment (no
 * `/`), `**` matches across segments, `?` one character. Everything else is literal.
 */

/** Compiles one pattern to an anchored RegExp. */
export function globToRegExp(pattern: string): RegExp {
  return new RegExp(`^${globSource(pattern)}$`, 's');
}

/** The unanchored RegExp source of one pattern. */
function globSource(pattern: string): string {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        // `/**/` also matches `/`, and a trailing `/**` matches the directory itself.
        if (pattern[i + 2] === '/') {
          re += '(?:.*/)?';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  if (pattern.endsWith('/**')) re = `${re.slice(0, -'/.*'.length)}(?:/.*)?`;
  return re;
}

/**
 * A set of patterns matched together: one alternation, so a path costs one RegExp run however
 * many patterns there are (the comparison matches every path of every surface).
 */
export class GlobSet {
  private readonly re: RegExp | undefined;
  constructor(patterns: readonly string[]) {
    this.re = patterns.length ? new RegExp(`^(?:${patterns.map((p) => `(?:${globSource(p)})`).join('|')})$`, 's') : undefined;
  }
  matches(s: string): boolean {
    return this.re?.test(s) ?? false;
  }
}
