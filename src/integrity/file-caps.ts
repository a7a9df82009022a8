/**
 * File capabilities (the `security.capability` attribute `setcap` writes): a copy of python with
 * `cap_setuid+ep` is a root shell as surely as a setuid one, and its mode bits show nothing;
 * setting one on an existing file changes only its ctime, and the content comparison then finds the
 * same bytes. Read with `getcap -r` (libcap2-bin, priority important on Debian) over the file
 * surfaces' trees, beside the walk: `filecap:<path>` → the capability text.
 */
import path from 'node:path';
import { shellQuote, type ToolShell } from './tool-shell.js';

/** The getcap run: a few thousand files on a stock image; a hung file system must not hold the check. */
const GETCAP_TIMEOUT_MS = 60_000;
/** getcap prints one line per file with capabilities: a handful on an image. */
const GETCAP_MAX_BYTES = 16 * 1024 * 1024;

/** `filecap:<host path>` objects, and what could not be read. */
export interface FileCaps {
  objects: Record<string, string>;
  unreadable: string[];
}

/**
 * Every file with capabilities under `paths` (host view, read under `root`), outside `excluded`,
 * through `shell` (the guard keeps one: no child of the agent per check). getcap's complaints (a
 * file gone mid-walk, a path that does not exist) do not count; a missing getcap is named as
 * unreadable, so a baseline that had it and a check that has not differ.
 */
export async function readFileCaps(
  root: string,
  paths: readonly string[],
  excluded: readonly string[],
  shell: ToolShell,
  signal?: AbortSignal,
): Promise<FileCaps> {
  const real = (p: string): string => (root === '/' ? p : path.join(root, p));
  const inside = (p: string): boolean => excluded.some((e) => p === e || p.startsWith(`${e}/`));
  const script = `command -v getcap >/dev/null || { echo '${MISSING}'; exit 0; }\ngetcap -r ${paths.map((p) => shellQuote(real(p))).join(' ')}`;
  const r = await shell.run(script, { timeoutMs: GETCAP_TIMEOUT_MS, maxBytes: GETCAP_MAX_BYTES }, signal);
  if (!r.ok) return { objects: {}, unreadable: [`filecap: getcap: ${r.why}`] };
  if (r.stdout.startsWith(MISSING)) return { objects: {}, unreadable: ['filecap: getcap is not installed (libcap2-bin)'] };
  const objects: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    // libcap 2.4x prints `path = caps`, newer ones `path caps` (`=ep` is every capability).
    const m = /^(.+?)\s+(?:=\s+)?(\S+)$/.exec(line);
    if (!m) continue;
    const file = root === '/' ? (m[1] as string) : `/${path.relative(root, m[1] as string)}`;
    if (!inside(file)) objects[`filecap:${file}`] = m[2] as string;
  }
  return { objects, unreadable: [] };
}

/** What the script prints when getcap is not installed. */
const MISSING = '#getcap-missing';
