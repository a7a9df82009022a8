/**
 * The stored system baseline: `<stateDir>/integrity/baseline.json`, root-only (directory 0700,
 * file 0600), carrying a sha256 digest of its body so corruption or a naive edit is detected, and
 * the identity of the image it was taken on so a baseline of another image is refused.
 */
import { constants as fsc } from 'node:fs';
import { lstat, mkdir, chmod, open, rename, rm } from 'node:fs/promises';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import path from 'node:path';
import { fsyncDir } from '../lib/fs.js';
import { FileTable } from './file-table.js';
import { IntegrityBaselineError, type FileMeta, type HostIdentity, type Snapshot, type SurfaceName, type SystemBaseline } from './types.js';

/** The baseline file and the forensics directory of a state directory. */
export function integrityPaths(stateDir: string): { dir: string; baseline: string; forensics: string } {
  const dir = path.join(stateDir, 'integrity');
  return { dir, baseline: path.join(dir, 'baseline.json'), forensics: path.join(dir, 'forensics') };
}

/** Line 1 with a zero digest: written first, overwritten in place once the body's digest is known. */
const DIGEST_PLACEHOLDER = `${JSON.stringify({ digest: '0'.repeat(64) })}\n`;
/** Bytes handed to the file at once: one write per this much, not one per entry. */
const WRITE_CHUNK = 1024 * 1024;

/** One file entry's line: `[path, surface, type, ino, size, mode, uid, gid, mtimeMs, ctimeMs, hash, link?]`. */
type EntryLine = [string, SurfaceName, FileMeta['type'], number, number, number, number, number, number, number, string, string?];

/** The header line of a format-2 baseline: everything but the file entries, which follow one a line. */
interface Header extends Omit<SystemBaseline, 'snapshot'> {
  snapshot: { objects: Record<string, string>; unreadable: string[]; files: number };
}

/**
 * Writes the baseline atomically, root-only, streamed: line 1 `{"digest": <sha256 of the rest>}`,
 * line 2 the header (identity, surfaces, kernel and account objects), then one line per file entry.
 * Nothing the size of the whole baseline is built in memory.
 */
export async function saveBaseline(stateDir: string, b: SystemBaseline): Promise<string> {
  const p = integrityPaths(stateDir);
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  await chmod(p.dir, 0o700);
  const tmp = path.join(p.dir, `.baseline.json.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY | fsc.O_NOFOLLOW, 0o600);
  try {
    const hash = createHash('sha256');
    let buf = '';
    const flush = async (): Promise<void> => {
      hash.update(buf);
      await fh.write(buf);
      buf = '';
    };
    await fh.write(DIGEST_PLACEHOLDER);
    const { files, ...rest } = b.snapshot;
    const header: Header = { ...b, snapshot: { ...rest, files: files.size } };
    buf += `${JSON.stringify(header)}\n`;
    for (let r = 0; r < files.size; r++) {
      const m = files.meta(r);
      const line: EntryLine = [
        files.path(r),
        files.surface(r),
        m.type,
        m.ino,
        m.size,
        m.mode,
        m.uid,
        m.gid,
        m.mtimeMs,
        m.ctimeMs,
        m.hash ?? '',
      ];
      if (m.link !== undefined) line.push(m.link);
      buf += `${JSON.stringify(line)}\n`;
      if (buf.length >= WRITE_CHUNK) await flush();
    }
    await flush();
    await fh.write(`${JSON.stringify({ digest: hash.digest('hex') })}\n`, 0);
    await fh.chmod(0o600);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await rename(tmp, p.baseline);
  await fsyncDir(p.dir);
  return p.baseline;
}

/** A loaded baseline and the digest its file recorded (what a running agent pins). */
export interface LoadedBaseline {
  baseline: SystemBaseline;
  digest: string;
}

/**
 * Loads and checks the baseline, streamed (its entries go straight into a compact table).
 * Throws IntegrityBaselineError: `missing`, `unsafe` (not root-only), `corrupt` (unparsable,
 * digest mismatch, unknown format). Reads format 1 (one JSON body line) as written before.
 */
export async function loadBaseline(stateDir: string): Promise<LoadedBaseline> {
  const file = integrityPaths(stateDir).baseline;
  const st = await lstat(file).catch(() => undefined);
  if (!st) throw new IntegrityBaselineError('missing', file, `no system baseline at ${file}: run \`runner-warden baseline\` on the image`);
  if (!st.isFile() || st.uid !== 0 || (st.mode & 0o077) !== 0) {
    throw new IntegrityBaselineError(
      'unsafe',
      file,
      `${file}: expected a regular file owned by root with mode 0600, got uid ${st.uid} mode ${(st.mode & 0o7777).toString(8)}`,
    );
  }
  const corrupt = (what: string, cause?: unknown): IntegrityBaselineError =>
    new IntegrityBaselineError('corrupt', file, `${file}: ${what}`, cause === undefined ? undefined : { cause });
  const rest = createHash('sha256');
  let digest: unknown;
  let header: Header | undefined;
  let legacy: { body: string; baseline: LegacyBaseline } | undefined;
  const files = new FileTable();
  let lineNo = 0;
  for await (const line of lines(file, rest)) {
    lineNo++;
    try {
      if (lineNo === 1) digest = (JSON.parse(line) as { digest?: unknown }).digest;
      else if (lineNo === 2) {
        const h = JSON.parse(line) as Header | LegacyBaseline;
        if (h.format === 1) legacy = { body: line, baseline: h };
        else header = h;
      } else {
        const e = JSON.parse(line) as EntryLine;
        const m: FileMeta = { type: e[2], ino: e[3], size: e[4], mode: e[5], uid: e[6], gid: e[7], mtimeMs: e[8], ctimeMs: e[9] };
        if (e[10]) m.hash = e[10];
        if (e[11] !== undefined) m.link = e[11];
        files.set(e[0], m, e[1]);
      }
    } catch (err) {
      if (lineNo === 1) throw corrupt('line 1: expected {"digest": "<sha256>"}', err);
      throw corrupt(`line ${lineNo}: expected ${lineNo === 2 ? 'the baseline header' : 'a file entry'} JSON`, err);
    }
  }
  // Format 1 digested its one body line without the newline.
  const expected = legacy ? createHash('sha256').update(legacy.body).digest('hex') : rest.digest('hex');
  if (typeof digest !== 'string' || digest !== expected) {
    throw corrupt("digest: the body's sha256 does not match the recorded digest (corrupted or edited)");
  }
  if (legacy) {
    const l = legacy.baseline;
    if (!l.snapshot?.files || !l.identity) throw corrupt('format: expected 1 or 2 with identity and snapshot');
    for (const [p, m] of Object.entries(l.snapshot.files)) files.set(p, m, l.snapshot.fileSurface?.[p] ?? 'etc');
    const { files: _f, fileSurface: _s, ...objects } = l.snapshot;
    header = { ...l, format: 2, snapshot: { ...objects, files: files.size } };
  }
  if (!header || header.format !== 2 || !header.snapshot || !header.identity) {
    throw corrupt(`format: expected 2 with identity and snapshot, got ${String(header?.format)}`);
  }
  if (header.snapshot.files !== files.size) throw corrupt(`line 2: expected ${header.snapshot.files} file entries, found ${files.size}`);
  files.trim();
  const { files: _n, ...snap } = header.snapshot;
  return { baseline: { ...header, snapshot: { ...snap, files } }, digest };
}

/** The shape written by the first format: the whole snapshot on one line. */
interface LegacyBaseline extends Omit<SystemBaseline, 'format' | 'snapshot'> {
  format: 1;
  snapshot: Snapshot;
}

/** Bytes read at once while loading. */
const READ_CHUNK = 1024 * 1024;

/** The file's lines (without their newline); every byte after line 1 also goes into `rest`. */
async function* lines(file: string, rest: Hash): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let carry = '';
  let first = true;
  // Not through a symlink swapped in after the lstat; the stream closes the handle.
  const fh = await open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  for await (const chunk of fh.createReadStream({ highWaterMark: READ_CHUNK }) as AsyncIterable<Buffer>) {
    let text: string;
    if (first) {
      const nl = chunk.indexOf(0x0a);
      if (nl < 0) {
        carry += decoder.write(chunk);
        continue;
      }
      first = false;
      rest.update(chunk.subarray(nl + 1));
      text = carry + decoder.write(chunk);
    } else {
      rest.update(chunk);
      text = carry + decoder.write(chunk);
    }
    const parts = text.split('\n');
    carry = parts.pop() as string;
    for (const l of parts) yield l;
  }
  carry += decoder.end();
  if (carry !== '') yield carry;
}

/**
 * What differs between the baseline's image and this host, one line each; empty = same image.
 * `packages` false skips the package set (a team allows installing packages).
 */
export function identityDifferences(base: HostIdentity, now: HostIdentity, packages: boolean): string[] {
  const out: string[] = [];
  if (base.machineId !== now.machineId) out.push(`machine id: baseline ${base.machineId || '(empty)'}, host ${now.machineId || '(empty)'}`);
  if (base.kernel !== now.kernel) out.push(`kernel: baseline ${base.kernel}, host ${now.kernel}`);
  if (packages && base.packageSet !== now.packageSet) {
    out.push(
      `package set: baseline ${base.packageCount} packages (${base.packageSet.slice(0, 12)}), host ${now.packageCount} (${now.packageSet.slice(0, 12)})`,
    );
  }
  return out;
}
