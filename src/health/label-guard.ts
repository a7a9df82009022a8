/**
 * Bounded label values for the agent's metrics: every label is meant to hold a short fixed
 * vocabulary (states, step names, route templates, exit codes); a caller's mistake (a raw URL, an
 * error message) must not grow memory and the /metrics body without bound.
 */

/**
 * Distinct values one label may take before further values are folded into "other": far above
 * any vocabulary the agent uses, far below what would make /metrics heavy.
 */
export const MAX_LABEL_VALUES = 64;

/** Longest label value kept; longer values are cut, for the same reason as MAX_LABEL_VALUES. */
export const MAX_LABEL_LENGTH = 80;

/** One guard per label name: the values seen so far, up to MAX_LABEL_VALUES. */
export class LabelGuards {
  private readonly seen = new Map<string, Set<string>>();

  constructor(private readonly max = MAX_LABEL_VALUES) {}

  /** `raw` as label `label` may carry it: cut to MAX_LABEL_LENGTH, or "other" once the label is full. */
  value(label: string, raw: string | number): string {
    let v = String(raw);
    if (v.length > MAX_LABEL_LENGTH) v = v.slice(0, MAX_LABEL_LENGTH);
    let seen = this.seen.get(label);
    if (!seen) {
      seen = new Set();
      this.seen.set(label, seen);
    }
    if (seen.has(v)) return v;
    if (seen.size >= this.max) return 'other';
    seen.add(v);
    return v;
  }
}
