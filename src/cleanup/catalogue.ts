/**
 * The credential catalogue: the files tools write in the runner user's home (and the runner's own
 * config files in its root), each with a kind name for the report, and how they are found and
 * removed without following links (src/lib/nofollow.ts, remove-entry.ts).
 */
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { resolveUnder, bytes, fromText, joinRel, safeRel, isGone } from '../lib/nofollow.js';
import { removeEntry } from './remove-entry.js';
import type { Removed, Slot } from './types.js';

/** Where a catalogue path starts. */
export type CatalogueBase = 'home' | 'runnerRoot' | 'xdgRuntime' | 'jobRoot';

/** One kind of credential file. */
export interface CatalogueEntry {
  /** Name in the report, e.g. "docker", "aws". */
  kind: string;
  base: CatalogueBase;
  /** Relative to the base; may hold `*`, `?`, `[..]` and `**` when `glob` is true. */
  path: string;
  glob?: boolean;
  /** Globs (same base) this entry never matches. */
  exclude?: string[];
}

/** Every credential file the catalogue knows, in report order. */
export const CREDENTIAL_CATALOGUE: readonly CatalogueEntry[] = [
  { kind: 'docker', base: 'home', path: '.docker/config.json' },
  // The per-job DOCKER_CONFIG directories the agent hands out live under slot.jobRoot.
  { kind: 'docker', base: 'jobRoot', path: '*/config.json', glob: true },
  { kind: 'docker', base: 'jobRoot', path: '*/*/config.json', glob: true },
  { kind: 'containers', base: 'home', path: '.config/containers/auth.json' },
  { kind: 'containers', base: 'xdgRuntime', path: 'containers/auth.json' },
  { kind: 'npm', base: 'home', path: '.npmrc' },
  { kind: 'yarn', base: 'home', path: '.yarnrc' },
  { kind: 'yarn', base: 'home', path: '.yarnrc.yml' },
  { kind: 'pip', base: 'home', path: '.config/pip/pip.conf' },
  { kind: 'pip', base: 'home', path: '.pip/pip.conf' },
  { kind: 'pypirc', base: 'home', path: '.pypirc' },
  { kind: 'git-credentials', base: 'home', path: '.git-credentials' },
  { kind: 'git-credentials', base: 'home', path: '.config/git/credentials' },
  // gitconfig can carry credential helpers, tokens in url.*.insteadOf and core.hooksPath: it is
  // removed when it differs from the baseline, and the home step puts the baseline copy back.
  { kind: 'git-config', base: 'home', path: '.gitconfig' },
  { kind: 'git-config', base: 'home', path: '.config/git/config' },
  { kind: 'netrc', base: 'home', path: '.netrc' },
  { kind: 'netrc', base: 'home', path: '_netrc' },
  { kind: 'aws', base: 'home', path: '.aws/credentials' },
  { kind: 'aws', base: 'home', path: '.aws/config' },
  { kind: 'gcloud', base: 'home', path: '.config/gcloud' },
  { kind: 'azure', base: 'home', path: '.azure' },
  { kind: 'kube', base: 'home', path: '.kube/config' },
  { kind: 'gh', base: 'home', path: '.config/gh/hosts.yml' },
  { kind: 'ssh-authorized-keys', base: 'home', path: '.ssh/authorized_keys' },
  { kind: 'ssh-authorized-keys', base: 'home', path: '.ssh/authorized_keys2' },
  {
    kind: 'ssh-key',
    base: 'home',
    path: '.ssh/*',
    glob: true,
    exclude: ['.ssh/known_hosts', '.ssh/known_hosts.old', '.ssh/*.pub', '.ssh/config', '.ssh/authorized_keys*'],
  },
  { kind: 'gnupg', base: 'home', path: '.gnupg' },
  { kind: 'maven', base: 'home', path: '.m2/settings.xml' },
  { kind: 'maven', base: 'home', path: '.m2/settings-security.xml' },
  { kind: 'gradle', base: 'home', path: '.gradle/gradle.properties' },
  { kind: 'cargo', base: 'home', path: '.cargo/credentials' },
  { kind: 'cargo', base: 'home', path: '.cargo/credentials.toml' },
  { kind: 'nuget', base: 'home', path: '.nuget/NuGet/NuGet.Config' },
  { kind: 'terraform', base: 'home', path: '.terraform.d/credentials.tfrc.json' },
  { kind: 'vault', base: 'home', path: '.vault-token' },
  { kind: 'helm', base: 'home', path: '.config/helm/registry/config.json' },
  { kind: 'helm', base: 'home', path: '.config/helm/repositories.yaml' },
  { kind: 'gem', base: 'home', path: '.gem/credentials' },
  { kind: 'composer', base: 'home', path: '.composer/auth.json' },
  { kind: 'composer', base: 'home', path: '.config/composer/auth.json' },
  { kind: 'runner-credentials', base: 'runnerRoot', path: '.credentials' },
  { kind: 'runner-credentials', base: 'runnerRoot', path: '.credentials_rsaparams' },
  { kind: 'runner-credentials', base: 'runnerRoot', path: '.runner' },
  { kind: 'runner-credentials', base: 'runnerRoot', path: '*_migrated', glob: true },
];

/** The roots catalogue paths start from, for one slot (byte strings). */
export interface CatalogueRoots {
  home: string;
  runnerRoot: string;
  /** `$XDG_RUNTIME_DIR` of the runner user; default /run/user/<uid>. */
  xdgRuntime: string;
  jobRoot: string;
}

/** The catalogue roots of a slot. */
export function catalogueRoots(slot: Slot): CatalogueRoots {
  return {
    home: fromText(slot.user.home),
    runnerRoot: fromText(slot.runnerRoot),
    xdgRuntime: `/run/user/${slot.user.uid}`,
    jobRoot: fromText(slot.jobRoot),
  };
}

/** The catalogue plus the policy's extra paths and globs (relative to home; unsafe ones returned apart). */
export function catalogueWithExtras(
  extraPaths: readonly string[],
  extraGlobs: readonly string[],
): { entries: CatalogueEntry[]; rejected: string[] } {
  const entries = [...CREDENTIAL_CATALOGUE];
  const rejected: string[] = [];
  for (const p of extraPaths) {
    const rel = safeRel(p);
    if (rel === undefined) rejected.push(p);
    else entries.push({ kind: 'extra', base: 'home', path: fromText(rel) });
  }
  for (const g of extraGlobs) {
    const rel = safeRel(g);
    if (rel === undefined) rejected.push(g);
    else entries.push({ kind: 'extra', base: 'home', path: fromText(rel), glob: true });
  }
  return { entries, rejected };
}

/** A catalogue file that exists. */
export interface FoundCredential {
  kind: string;
  base: CatalogueBase;
  /** Absolute root the path starts from. */
  root: string;
  /** Byte-string path relative to root. */
  rel: string;
  /** lstat of the entry (a symlink is reported as one, never followed). */
  stat: Stats;
  /** Set when a parent component is a symlink: `rel` is then that symlink, not the catalogue path. */
  linkInPath?: boolean;
}

/** Converts a glob (one path, `/`-separated) to an anchored RegExp; `*` also matches dotfiles. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  const segs = glob.split('/');
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === '**') {
      re += last ? '.*' : '(?:[^/]*/)*';
      return;
    }
    for (let j = 0; j < seg.length; j++) {
      const c = seg[j] as string;
      if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else if (c === '[') {
        const end = seg.indexOf(']', j + 1);
        if (end < 0) re += '\\[';
        else {
          const body = seg
            .slice(j + 1, end)
            .replace(/^!/, '^')
            .replace(/\\/g, '\\\\');
          re += `[${body}]`;
          j = end;
        }
      } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
    }
    if (!last) re += '/';
  });
  return new RegExp(`^${re}$`, 's');
}

/**
 * Entries visited at most by one glob walk: a job can create millions of files; a glob that would
 * need to look at more reports what it found so far (the home step and verify still see the rest).
 */
const GLOB_WALK_LIMIT = 200_000;
/** `**` descends at most this deep. */
const GLOB_MAX_DEPTH = 32;

async function globWalk(root: string, glob: string): Promise<{ rel: string; stat: Stats }[]> {
  const segs = glob.split('/');
  const literal: string[] = [];
  for (const s of segs) {
    if (/[*?[]/.test(s)) break;
    literal.push(s);
  }
  const rest = segs.slice(literal.length);
  const maxDepth = rest.includes('**') ? GLOB_MAX_DEPTH : rest.length;
  const re = globToRegExp(glob);
  const start = literal.join('/');
  const out: { rel: string; stat: Stats }[] = [];
  if (rest.length === 0) {
    const st = await lstatOrUndef(path.posix.join(root, start));
    if (st) out.push({ rel: start, stat: st });
    return out;
  }
  // Walk the literal prefix without following links.
  if (start !== '') {
    const r = await resolveUnder(root, start);
    if (r.kind === 'absent') return out;
    await r.dir.close();
    if (r.kind !== 'found' || !r.stat.isDirectory()) return out;
  }
  let visited = 0;
  const queue: { rel: string; depth: number }[] = [{ rel: start, depth: 0 }];
  while (queue.length > 0) {
    const { rel, depth } = queue.shift() as { rel: string; depth: number };
    let names: Buffer[];
    try {
      names = await fsp.readdir(bytes(path.posix.join(root, rel)), { encoding: 'buffer' });
    } catch {
      continue;
    }
    for (const b of names) {
      if (++visited > GLOB_WALK_LIMIT) return out;
      const childRel = joinRel(rel, b.toString('latin1'));
      const st = await lstatOrUndef(path.posix.join(root, childRel));
      if (!st) continue;
      if (re.test(childRel)) out.push({ rel: childRel, stat: st });
      else if (st.isDirectory() && depth + 1 < maxDepth) queue.push({ rel: childRel, depth: depth + 1 });
    }
  }
  return out;
}

async function lstatOrUndef(p: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(bytes(p));
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  }
}

/**
 * Finds every catalogue file that exists, without following links. A symlinked parent (e.g.
 * `~/.docker -> /etc`) is reported as the symlink itself with `linkInPath`, never followed.
 * Each path is reported once (the first entry that names it wins).
 */
export async function findCredentials(roots: CatalogueRoots, entries: readonly CatalogueEntry[]): Promise<FoundCredential[]> {
  const seen = new Set<string>();
  const out: FoundCredential[] = [];
  const add = (f: FoundCredential): void => {
    const key = `${f.root}\0${f.rel}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push(f);
  };
  for (const e of entries) {
    const root = roots[e.base];
    if (e.glob) {
      const excludes = (e.exclude ?? []).map(globToRegExp);
      for (const hit of await globWalk(root, e.path)) {
        if (excludes.some((x) => x.test(hit.rel))) continue;
        add({ kind: e.kind, base: e.base, root, rel: hit.rel, stat: hit.stat });
      }
      // A symlinked parent of the glob's literal prefix is reported like a literal path's.
      const segs = e.path.split('/');
      const firstGlob = segs.findIndex((s) => /[*?[]/.test(s));
      const prefix = segs.slice(0, firstGlob < 0 ? segs.length : firstGlob).join('/');
      if (prefix !== '') {
        const r = await resolveUnder(root, `${prefix}/x`);
        if (r.kind !== 'absent') {
          await r.dir.close();
          if (r.kind === 'link-in-path') add({ kind: e.kind, base: e.base, root, rel: r.at, stat: r.stat, linkInPath: true });
        }
      }
      continue;
    }
    const r = await resolveUnder(root, e.path);
    if (r.kind === 'absent') continue;
    await r.dir.close();
    if (r.kind === 'found') add({ kind: e.kind, base: e.base, root, rel: e.path, stat: r.stat });
    else add({ kind: e.kind, base: e.base, root, rel: r.at, stat: r.stat, linkInPath: true });
  }
  return out;
}

/** Removes one found credential (re-resolved without following links). Returns what went. */
export async function removeCredential(found: FoundCredential): Promise<Removed> {
  const r = await resolveUnder(found.root, found.rel);
  if (r.kind === 'absent') return { count: 0, bytes: 0 };
  try {
    // For 'link-in-path' (a parent became a symlink since the scan) this removes that link, never
    // what it points at.
    return await removeEntry(r.dir, r.name);
  } finally {
    await r.dir.close();
  }
}
