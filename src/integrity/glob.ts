/**
 * Glob patterns of policy `host.integrity.exceptions`: `*` matches within one path segment (no
 * `/`), `**` matches across segments, `?` one character. Everything else is literal.
 */

/** Compiles one pattern to an anchored RegExp. */
export function globToRegExp(pattern: string): RegExp {
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
  return new RegExp(`^${re}$`, 's');
}

/** A set of patterns matched together. */
export class GlobSet {
  private readonly res: RegExp[];
  constructor(patterns: readonly string[]) {
    this.res = patterns.map(globToRegExp);
  }
  matches(s: string): boolean {
    return this.res.some((r) => r.test(s));
  }
}
