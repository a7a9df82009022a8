/**
 * The stored system baseline: `<stateDir>/integrity/baseline.json`, root-only (directory 0700,
 * file 0600), carrying a sha256 digest of its body so corruption or a naive edit is detected, and
 * the identity of the image it was taken on so a baseline of another image is refused.
 */
import { lstat, mkdir, chmod, readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { writeFileAtomic } from '../lib/fs.js';
import { IntegrityBaselineError, type HostIdentity, type SystemBaseline } from './types.js';

/** The baseline file and the forensics directory of a state directory. */
export function integrityPaths(stateDir: string): { dir: string; baseline: string; forensics: string } {
  const dir = path.join(stateDir, 'integrity');
  return { dir, baseline: path.join(dir, 'baseline.json'), forensics: path.join(dir, 'forensics') };
}

function digestOf(body: string): string {
  return createHash('sha256').update(body).digest('hex');
}

/** Writes the baseline atomically, root-only. */
export async function saveBaseline(stateDir: string, b: SystemBaseline): Promise<string> {
  const p = integrityPaths(stateDir);
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  await chmod(p.dir, 0o700);
  const body = JSON.stringify(b);
  // The digest line first, then the body on one line: the file stays readable with head(1).
  await writeFileAtomic(p.baseline, `${JSON.stringify({ digest: digestOf(body) })}\n${body}\n`, 0o600);
  return p.baseline;
}

/** A loaded baseline and the digest its file recorded (what a running agent pins). */
export interface LoadedBaseline {
  baseline: SystemBaseline;
  digest: string;
}

/**
 * Loads and checks the baseline. Throws IntegrityBaselineError: `missing`, `unsafe` (not
 * root-only), `corrupt` (unparsable, digest mismatch, unknown format).
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
  const text = await readFile(file, 'utf8');
  const nl = text.indexOf('\n');
  let digest: unknown;
  let body = '';
  try {
    digest = (JSON.parse(text.slice(0, nl)) as { digest?: unknown }).digest;
    body = text.slice(nl + 1).replace(/\n$/, '');
  } catch (err) {
    throw new IntegrityBaselineError('corrupt', file, `${file}: line 1: expected {"digest": "<sha256>"}`, { cause: err });
  }
  if (typeof digest !== 'string' || digest !== digestOf(body)) {
    throw new IntegrityBaselineError(
      'corrupt',
      file,
      `${file}: digest: the body's sha256 does not match the recorded digest (corrupted or edited)`,
    );
  }
  let b: SystemBaseline;
  try {
    b = JSON.parse(body) as SystemBaseline;
  } catch (err) {
    throw new IntegrityBaselineError('corrupt', file, `${file}: line 2: expected the baseline JSON`, { cause: err });
  }
  if (b.format !== 1 || !b.snapshot || !b.identity) {
    throw new IntegrityBaselineError('corrupt', file, `${file}: format: expected 1 with identity and snapshot, got ${String(b.format)}`);
  }
  return { baseline: b, digest };
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
