/**
 * The answer of the agent's own fetch (http-fetch.ts): what Octokit reads of a fetch `Response`
 * (status, statusText, url, headers iterated and read with get(), the body as text or bytes),
 * without Node's `Response` and `Headers`. Those globals are undici's: touching either loads
 * Node's whole fetch client, about 6 MiB of an idle agent's memory (docs/release.md).
 */

/** What the agent's fetch takes: Octokit passes a URL string and these fields of RequestInit. */
export type HttpInit = Pick<RequestInit, 'method' | 'headers' | 'body' | 'signal' | 'redirect'>;

/** The fields of a fetch answer the agent and Octokit read; a standard `Response` has them too. */
export interface AnswerLike {
  readonly status: number;
  readonly statusText: string;
  readonly url: string;
  readonly headers: HeadersLike;
  arrayBuffer(): Promise<ArrayBuffer>;
  text(): Promise<string>;
}

/** The header fields read: get() and iteration as [lower-case name, value]. */
export interface HeadersLike extends Iterable<[string, string]> {
  get(name: string): string | null;
  forEach(fn: (value: string, name: string) => void): void;
}

/** A fetch-shaped function whose answers have the fields above (the global fetch is one). */
export type HttpFetch = (input: string | URL, init?: HttpInit) => Promise<AnswerLike>;

/** Statuses whose answer has no body (the fetch standard's null body statuses). */
export const NULL_BODY_STATUS: ReadonlySet<number> = new Set([101, 103, 204, 205, 304]);

/** Answer headers: names lower-cased, repeated fields joined with ", " as fetch joins them. */
export class AnswerHeaders implements HeadersLike {
  readonly #map = new Map<string, string>();

  append(name: string, value: string): void {
    const k = name.toLowerCase();
    const v = value.trim();
    const old = this.#map.get(k);
    this.#map.set(k, old === undefined ? v : `${old}, ${v}`);
  }

  get(name: string): string | null {
    return this.#map.get(name.toLowerCase()) ?? null;
  }

  has(name: string): boolean {
    return this.#map.has(name.toLowerCase());
  }

  delete(name: string): void {
    this.#map.delete(name.toLowerCase());
  }

  forEach(fn: (value: string, name: string) => void): void {
    for (const [k, v] of this) fn(v, k);
  }

  /** Sorted by name, as fetch's Headers iterates. */
  *[Symbol.iterator](): IterableIterator<[string, string]> {
    yield* [...this.#map.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
}

/** A whole answer in memory: its body is read once, as a fetch Response's is. */
export class FetchAnswer implements AnswerLike {
  readonly status: number;
  readonly statusText: string;
  readonly url: string;
  readonly headers: AnswerHeaders;
  #body: Buffer | null;
  #used = false;

  constructor(body: Buffer | null, init: { status: number; statusText: string; url: string; headers: AnswerHeaders }) {
    this.#body = body;
    this.status = init.status;
    this.statusText = init.statusText;
    this.url = init.url;
    this.headers = init.headers;
  }

  get ok(): boolean {
    return this.status >= 200 && this.status <= 299;
  }

  get bodyUsed(): boolean {
    return this.#used;
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    return settle(() => {
      const b = this.#take();
      const out = new ArrayBuffer(b.length);
      new Uint8Array(out).set(b);
      return out;
    });
  }

  text(): Promise<string> {
    return settle(() => this.#take().toString('utf8'));
  }

  json(): Promise<unknown> {
    return settle(() => JSON.parse(this.#take().toString('utf8')) as unknown);
  }

  #take(): Buffer {
    if (this.#used) throw new TypeError('the answer body was already read');
    this.#used = true;
    const b = this.#body ?? Buffer.alloc(0);
    this.#body = null;
    return b;
  }
}

/** fn's value as a promise, its throw as a rejection (a second read rejects, as fetch's does). */
function settle<T>(fn: () => T): Promise<T> {
  return new Promise((resolve) => resolve(fn()));
}

/** Request headers given as fetch takes them (a record, pairs, or a Headers-like object), lower-cased. */
export function requestHeaders(init: HttpInit['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  const put = (k: string, v: string): void => {
    const key = k.toLowerCase();
    out[key] = out[key] === undefined ? String(v) : `${out[key]}, ${String(v)}`;
  };
  if (init === undefined || init === null) return out;
  if (Array.isArray(init)) {
    for (const pair of init as [string, string][]) put(pair[0], pair[1]);
  } else if (typeof (init as { forEach?: unknown }).forEach === 'function') {
    // A Headers object: read through its own forEach, never `instanceof Headers` (that loads undici).
    (init as HeadersLike).forEach((v, k) => put(k, v));
  } else {
    for (const [k, v] of Object.entries(init as Record<string, string>)) put(k, v);
  }
  return out;
}
