/**
 * The error classes callers branch on (docs/decisions.md, "Typed errors"). Each carries structured fields; branch
 * with `instanceof`, never on message text.
 */

/** A host config file is missing or invalid. The CLI maps it to exit 78 (EX_CONFIG). */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    message: string,
    readonly file: string,
    /** Each problem as `file:line:col: json.path: expected ..., got ...`. */
    readonly problems: string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A team policy file is invalid. Holds every problem found, not only the first. */
export class PolicyError extends Error {
  override name = 'PolicyError';
  constructor(
    message: string,
    readonly file: string,
    readonly problems: string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A call to the GitHub API failed for good (after the retries the client does by itself). */
export class GitHubApiError extends Error {
  override name = 'GitHubApiError';
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly endpoint: string,
    /** What the caller should tell an operator, e.g. the permission the token lacks. */
    readonly hint?: string,
    options?: { cause?: unknown; attempts?: number },
  ) {
    super(message, options);
    this.attempts = options?.attempts ?? 1;
  }
  /**
   * How many times the client sent the request. Above 1, an earlier attempt failed without an
   * answer the client could trust (a deadline, a reset, a 5xx): the service may have done it.
   */
  readonly attempts: number;
  /** True for 401/403 that are not rate limits: retrying will not help. */
  get isAuth(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

/** A path escaped the root it must stay in (a symlink, `..`, another mount). Marks the host dirty. */
export class UnsafePathError extends Error {
  override name = 'UnsafePathError';
  constructor(
    message: string,
    readonly path: string,
    readonly root: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The runner root is not a runner installation. The CLI maps it to exit 78. */
export class RunnerInstallError extends Error {
  override name = 'RunnerInstallError';
  constructor(
    message: string,
    readonly root: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** True when `err` is the reason of an aborted signal (shutdown), which is an outcome, not a failure. */
export function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError');
}

/** A short, safe description of any thrown value for logs and reports. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
