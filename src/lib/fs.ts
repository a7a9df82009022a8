import { promises as fsp, constants as fsc } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Writes `data` to `file` so that a reader (or the agent after a crash) sees either the old or the
 * new content, never a torn one: write a sibling temp file, fsync it, rename it over, fsync the dir.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fsp.open(tmp, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY | fsc.O_NOFOLLOW, mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/** Appends one line and fsyncs before returning, so an acknowledged record survives a crash. */
export async function appendLineDurable(file: string, line: string, mode = 0o600): Promise<void> {
  const fh = await fsp.open(file, fsc.O_CREAT | fsc.O_APPEND | fsc.O_WRONLY | fsc.O_NOFOLLOW, mode);
  try {
    // write() may take only part of the line (a filesystem filling up) and still resolve: go on
    // until all of it is written, so a short write ends in the error of the next try (ENOSPC)
    // instead of a torn line the caller believes durable.
    const buf = Buffer.from(line.endsWith('\n') ? line : `${line}\n`);
    for (let off = 0; off < buf.length;) {
      const { bytesWritten } = await fh.write(buf, off, buf.length - off);
      if (bytesWritten <= 0) throw Object.assign(new Error(`no progress writing ${file}`), { code: 'EIO' });
      off += bytesWritten;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncs a directory so that a rename or create inside it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Creates a directory (and parents) with the given mode. An existing directory keeps its mode
 * unless others could write to it, which is then tightened to `mode`: the state dir is 0711 on
 * purpose (the runner user must traverse to its hook scripts) and must not be narrowed by a
 * component that only needs its own files private.
 */
export async function ensureDir(dir: string, mode = 0o700): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode });
  const st = await fsp.stat(dir);
  if ((st.mode & 0o022) !== 0) await fsp.chmod(dir, mode);
}

/** Reads a file if it exists; undefined when it does not (expected absence is not an error). */
export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** True when `child` is `root` or lies inside it, after resolving `..` lexically (no symlinks followed). */
export function isInside(root: string, child: string): boolean {
  const rel = path.relative(path.resolve(root), path.resolve(child));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}
