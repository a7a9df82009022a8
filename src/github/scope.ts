/** Where the runners live: an organisation, a repository or an enterprise. */
export type RunnerScope =
  { kind: 'org'; org: string } | { kind: 'repo'; owner: string; repo: string } | { kind: 'enterprise'; enterprise: string };

/** The REST path prefix of a scope, e.g. `/orgs/acme`. */
export function scopePath(s: RunnerScope): string {
  switch (s.kind) {
    case 'org':
      return `/orgs/${encodeURIComponent(s.org)}`;
    case 'repo':
      return `/repos/${encodeURIComponent(s.owner)}/${encodeURIComponent(s.repo)}`;
    case 'enterprise':
      return `/enterprises/${encodeURIComponent(s.enterprise)}`;
  }
}

/** The URL `config.sh --url` takes for a scope. */
export function scopeUrl(githubUrl: string, s: RunnerScope): string {
  const base = githubUrl.replace(/\/+$/, '');
  switch (s.kind) {
    case 'org':
      return `${base}/${s.org}`;
    case 'repo':
      return `${base}/${s.owner}/${s.repo}`;
    case 'enterprise':
      return `${base}/enterprises/${s.enterprise}`;
  }
}

/** The permission a 401/403 most likely means is missing (docs/runner-contract.md §10), for the operator. */
export function permissionHint(s: RunnerScope): string {
  switch (s.kind) {
    case 'org':
      return 'the token needs admin:org (classic PAT) or "Self-hosted runners: read and write" on the organisation (GitHub App or fine-grained token)';
    case 'repo':
      return 'the token needs the repo scope (classic PAT) or "Administration: read and write" on the repository (GitHub App or fine-grained token)';
    case 'enterprise':
      return 'the token needs manage_runners:enterprise (classic PAT); GitHub Apps cannot manage enterprise runners';
  }
}
