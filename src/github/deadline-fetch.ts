/**
 * A deadline on every HTTP exchange with GitHub, applied where the request is actually sent.
 *
 * Octokit's hooks are chained by before-after-hook with the options bound when the chain is
 * built, so a signal that an outer `hook.wrap('request')` adds to a copy of the options never
 * reaches the inner hooks nor fetch: the adapter's 30 s timeout silently did nothing and a
 * generate-jitconfig answered after 70 s returned after 70 s. Wrapping `request.fetch` instead
 * puts the deadline on every call Octokit makes, whatever hook made it (the App token mint too).
 */
import { AnswerHeaders, FetchAnswer, NULL_BODY_STATUS, type AnswerLike, type HttpFetch, type HttpInit } from './fetch-answer.js';

/** Thrown (as fetch's rejection) when a request outlived its deadline. */
export class RequestDeadlineError extends Error {
  override name = 'RequestDeadlineError';
  constructor(
    readonly url: string,
    readonly timeoutMs: number,
  ) {
    super(`no complete answer from ${url} within ${timeoutMs} ms`);
  }
}

/**
 * A fetch whose every call aborts after `timeoutMs` of real time (headers and body together), or
 * when `shutdown` aborts. The caller's own `init.signal` still works. A deadline that fires
 * rejects with RequestDeadlineError, so callers can tell it from a shutdown. The answer comes
 * back whole, as a FetchAnswer: no `Response` is built (that would load undici, fetch-answer.ts).
 */
export function withDeadline(inner: HttpFetch, timeoutMs: number, shutdown?: AbortSignal): HttpFetch {
  const deadlineFetch = async (input: string | URL, init: HttpInit = {}): Promise<FetchAnswer> => {
    const timer = new AbortController();
    const url = String(input);
    const t = setTimeout(() => timer.abort(new RequestDeadlineError(url, timeoutMs)), timeoutMs);
    const signals = [timer.signal, ...(init.signal ? [init.signal] : []), ...(shutdown ? [shutdown] : [])];
    const signal = AbortSignal.any(signals);
    try {
      const res = await inner(input, { ...init, signal });
      // Read the body under the same deadline: a server that sends headers and then stalls is as
      // hung as one that sends nothing.
      const body = NULL_BODY_STATUS.has(res.status) ? null : await readAll(res, signal);
      const headers = new AnswerHeaders();
      for (const [k, v] of res.headers) headers.append(k, v);
      return new FetchAnswer(body, { status: res.status, statusText: res.statusText, headers, url: res.url || url });
    } catch (err) {
      if (timer.signal.aborted && !init.signal?.aborted && !shutdown?.aborted) throw timer.signal.reason;
      throw err;
    } finally {
      clearTimeout(t);
    }
  };
  return deadlineFetch;
}

async function readAll(res: AnswerLike, signal: AbortSignal): Promise<Buffer> {
  const onAbort = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  onAbort.catch(() => {});
  return Buffer.from(await Promise.race([res.arrayBuffer(), onAbort]));
}
