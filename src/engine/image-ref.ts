/**
 * Docker Hub image references, parsed strictly (the grammar of distribution's `reference`
 * package, narrowed to what the image cache serves): names of warm images come from the policy
 * (the operator) or from a job's engine (hostile input), and only a reference that passes here is
 * ever handed to an engine.
 *
 * ```
 *  node:20                          → docker.io/library/node:20
 *  docker.io/acme/tool@sha256:<64>  → docker.io/acme/tool@sha256:<64>
 *  ghcr.io/x/y:1, localhost/x       → refused: not Docker Hub (the cache serves only Docker Hub)
 * ```
 */

/** distribution's limit on a repository name (its `NameTotalLengthMax`). */
export const MAX_NAME_LENGTH = 255;
/** A whole reference: a name, a 128-character tag and a sha256 digest fit with room to spare. */
export const MAX_REF_LENGTH = 512;

/** One path component: lower-case letters and digits, joined by '.', '_', '__' or dashes. */
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
/** A registry host (distribution's domain grammar, without IPv6 literals): what Docker would take `first/` for. */
const DOMAIN = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?$/;
/** The names Docker Hub answers to; Docker itself writes docker.io. */
const HUB_DOMAINS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** A Docker Hub reference: `repo` is the full path (`library/node`), with a tag, a digest or both. */
export interface HubRef {
  repo: string;
  tag?: string;
  digest?: string;
}

/** A parsed reference, or why it is not a Docker Hub one. */
export type HubRefResult = { ok: true; ref: HubRef } | { ok: false; why: string };

/** Parses `s` as a Docker Hub image reference (familiar or fully qualified). */
export function parseHubRef(s: unknown): HubRefResult {
  if (typeof s !== 'string') return { ok: false, why: 'not a string' };
  if (s.length === 0 || s.length > MAX_REF_LENGTH) return { ok: false, why: `empty or longer than ${MAX_REF_LENGTH} characters` };
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return { ok: false, why: 'its digest is not sha256:<64 lower-case hex digits>' };
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) return { ok: false, why: 'its tag is not 1-128 letters, digits, _ . -' };
  }
  const parts = rest.split('/');
  const first = parts[0] ?? '';
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase())) {
    if (!DOMAIN.test(first)) return { ok: false, why: `${first} is neither a registry host nor a name component` };
    if (!HUB_DOMAINS.has(first)) return { ok: false, why: `${first} is not Docker Hub (the image cache serves only Docker Hub)` };
    parts.shift();
  }
  if (parts.length === 0 || !parts.every((p) => COMPONENT.test(p))) return { ok: false, why: 'its name is not lower-case path components' };
  if (parts.length === 1) parts.unshift('library');
  const repo = parts.join('/');
  if (repo.length > MAX_NAME_LENGTH) return { ok: false, why: `its name is longer than ${MAX_NAME_LENGTH} characters` };
  return { ok: true, ref: { repo, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) } };
}

/** The fully qualified form: `docker.io/<repo>[:tag][@digest]`. */
export function canonicalRef(r: HubRef): string {
  return `docker.io/${r.repo}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}
