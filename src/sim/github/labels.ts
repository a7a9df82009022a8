/**
 * Runner labels of the fake GitHub: one id per label name (case-insensitive, stable for the
 * server's life, like the service's), and which names are read-only.
 */
import type { RestLabel } from './types.js';

/** Label names the service marks read-only because the runner applies them itself. */
const READ_ONLY_LABELS = new Set(['self-hosted', 'linux', 'windows', 'macos', 'x64', 'x86', 'arm', 'arm64']);

/** The labels the fake has handed out ids for. */
export class LabelRegistry {
  private readonly ids = new Map<string, number>();
  private nextId = 1;

  /** A label object; ids are stable per name, like the service's. */
  label(name: string, type?: RestLabel['type']): RestLabel {
    const key = name.toLowerCase();
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(key, id);
    }
    return { id, name, type: type ?? (READ_ONLY_LABELS.has(key) ? 'read-only' : 'custom') };
  }

  /** Builds a label list without duplicates (case-insensitive). */
  list(names: string[]): RestLabel[] {
    const out: RestLabel[] = [];
    for (const n of names) if (!out.some((l) => l.name.toLowerCase() === n.toLowerCase())) out.push(this.label(n));
    return out;
  }
}
