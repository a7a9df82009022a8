/**
 * The health endpoint's optional bearer token: read from a root-only file, compared in constant
 * time. Shared by the server and by `runner-warden status`.
 */
import { promises as fsp, constants as fsc } from 'node:fs';
import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../lib/errors.js';

/** Longest token accepted; a token file larger than this is a mistake (a key, a log), not a token. */
export const MAX_TOKEN_BYTES = 4096;

/** Options of readTokenFile; default owner: the current effective uid (root for the agent). */
export interface TokenFileOptions {
  /** The uid that must own the file; undefined skips the owner check. */
  ownerUid?: number;
}

/**
 * Reads the token file, refusing a file that group or others can read or write, a symlink, a
 * file owned by another user, a non-regular file, or an empty token. Throws ConfigError.
 */
export async function readTokenFile(file: string, opts: TokenFileOptions = {}): Promise<string> {
  const ownerUid = 'ownerUid' in opts ? opts.ownerUid : process.geteuid?.();
  let fh;
  try {
    // O_NOFOLLOW: a symlink could point the agent at a file with other permissions.
    fh = await fsp.open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    throw new ConfigError(`health token file ${file} cannot be opened`, file, [], { cause: err });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ConfigError(`health token file ${file} is not a regular file`, file);
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
      throw new ConfigError(`health token file ${file} has mode ${mode}: group or others can read it; run chmod 600 ${file}`, file);
    }
    if (ownerUid !== undefined && st.uid !== ownerUid) {
      throw new ConfigError(`health token file ${file} is owned by uid ${st.uid}, expected uid ${ownerUid}`, file);
    }
    if (st.size > MAX_TOKEN_BYTES) {
      throw new ConfigError(`health token file ${file} is larger than ${MAX_TOKEN_BYTES} bytes`, file);
    }
    const token = (await fh.readFile('utf8')).trim();
    if (token === '') throw new ConfigError(`health token file ${file} is empty`, file);
    if (/\s/.test(token)) throw new ConfigError(`health token file ${file} holds whitespace`, file);
    return token;
  } finally {
    await fh.close();
  }
}

/** Checks a presented token against the expected one without leaking its length or content timing. */
export class TokenCheck {
  private readonly digest: Buffer;
  constructor(token: string) {
    this.digest = sha256(token);
  }

  /** True when `authorization` is `Bearer <the token>`. */
  matches(authorization: string | undefined): boolean {
    if (authorization === undefined) return false;
    const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(authorization);
    // Hash even a malformed header so that every path costs about the same.
    const presented = sha256(m?.[1] ?? authorization);
    // Both digests are 32 bytes, as timingSafeEqual requires; comparing digests rather than the
    // raw strings also hides the token's length.
    return timingSafeEqual(presented, this.digest) && m !== null;
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
