/**
 * Where a runner registration lives: a repository, an organisation or an enterprise. The three
 * REST path families (docs/runner-contract.md §10) map onto these.
 */

/** A registration scope. Names compare case-insensitively, as GitHub's do. */
export type Scope =
  { kind: 'repo'; owner: string; repo: string } | { kind: 'org'; org: string } | { kind: 'enterprise'; enterprise: string };

/** A stable lower-case key, e.g. `repo:octo/app`. */
export function scopeKey(s: Scope): string {
  switch (s.kind) {
    case 'repo':
      return `repo:${s.owner}/${s.repo}`.toLowerCase();
    case 'org':
      return `org:${s.org}`.toLowerCase();
    case 'enterprise':
      return `enterprise:${s.enterprise}`.toLowerCase();
  }
}

/** The path a config.sh `--url` ends with for this scope: `octo/app`, `octo`, `enterprises/acme`. */
export function scopeUrlPath(s: Scope): string {
  switch (s.kind) {
    case 'repo':
      return `${s.owner}/${s.repo}`;
    case 'org':
      return s.org;
    case 'enterprise':
      return `enterprises/${s.enterprise}`;
  }
}

/** The REST path prefix of the scope: `/repos/octo/app`, `/orgs/octo`, `/enterprises/acme`. */
export function scopeRestPath(s: Scope): string {
  switch (s.kind) {
    case 'repo':
      return `/repos/${s.owner}/${s.repo}`;
    case 'org':
      return `/orgs/${s.org}`;
    case 'enterprise':
      return `/enterprises/${s.enterprise}`;
  }
}

/** True when a runner registered at `s` may take a job of `repository` (owner/name). */
export function scopeCovers(s: Scope, repository: string): boolean {
  const repo = repository.toLowerCase();
  switch (s.kind) {
    case 'repo':
      return repo === `${s.owner}/${s.repo}`.toLowerCase();
    case 'org':
      return repo.startsWith(`${s.org.toLowerCase()}/`);
    case 'enterprise':
      // The fake knows one enterprise and treats every known org as part of it.
      return true;
  }
}
