/**
 * Helpers every cleanup step uses to fill its report: capped line lists and removal counts by kind.
 */
import type { Removed } from './types.js';

/** Plan and problem lines kept in a report; the rest is summarised as "... and N more". */
export const MAX_REPORT_LINES = 50;

/** Caps a list of lines for a report. */
export function capLines(lines: string[], max = MAX_REPORT_LINES): string[] {
  if (lines.length <= max) return lines;
  return [...lines.slice(0, max), `... and ${lines.length - max} more`];
}

/** Adds to a removed-by-kind record. */
export function addRemoved(into: Record<string, Removed>, kind: string, r: Removed): void {
  const cur = into[kind] ?? { count: 0, bytes: 0 };
  cur.count += r.count;
  cur.bytes += r.bytes;
  into[kind] = cur;
}
