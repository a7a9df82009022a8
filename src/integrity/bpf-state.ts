/**
 * eBPF objects (the `bpf` surface): programs, links and maps, read with `bpftool --json` (Debian's
 * `bpftool` package). A root job can load a program and attach it to a cgroup (the cgroup holds it
 * after the loader exits), to an interface (XDP, tc), through a BPF link, or pin it in a bpffs:
 * it outlives every process of the job and watches or steers later jobs' traffic and system calls.
 *
 * The kernel numbers programs, links and maps in increasing order (a cyclic id allocator), so what
 * a job made is what has an id above the highest one at the job's start (the watermark). Only such
 * objects are reported, each under its own id, with its type, name, tag and what it is attached
 * to or pinned at: `bpf:prog#98 cgroup_skb rwprobe tag b11459a0e11ca14c attached cgroup
 * /sys/fs/cgroup/unified/x (cgroup_inet_egress)`. A program loaded and let go is freed with its
 * last reference and is no drift; one still being freed (its cgroup just removed) is read again
 * after a short wait before it counts.
 *
 * Not drift: the objects PID 1 holds open (read in /proc/1/fdinfo), and the maps and links of
 * programs it holds. systemd loads programs for its units' settings (DeviceAllow, PrivateDevices,
 * IPAddressDeny, RestrictFileSystems, SocketBind...) whenever it starts such a unit, a daily timer's
 * among them, keeps their descriptors and detaches them when the unit stops; a unit a job left
 * running is found by the systemd and processes surfaces. docs/integrity.md says what is left open.
 */
import path from 'node:path';
import { linkSync, listSync, readProcFile } from './proc-table.js';
import { shellQuote, type ToolShell } from './tool-shell.js';

/** The highest id of each kind at one moment, and the boot it belongs to (ids restart at boot). */
export interface BpfWatermark {
  boot: string;
  prog: number;
  link: number;
  map: number;
}

/** What one read found. */
export interface BpfRead {
  /** `bpf:<kind>#<id> ...` → details, for objects above the watermark not held by PID 1. */
  objects: Record<string, string>;
  /** The highest ids now; undefined when bpftool could not be run. */
  watermark?: BpfWatermark;
  unreadable: string[];
}

/** The unreadable line when bpftool is missing: the same at the baseline and every check. */
export const BPFTOOL_MISSING = 'bpf: bpftool is not installed (apt-get install bpftool): eBPF programs, links and maps are not checked';

/** The baseline's object that keeps its watermark (never compared: bpf objects count only when added). */
export const BPF_WATERMARK_KEY = 'bpf:watermark';

/** Three listings on a stock host: a few ms each; a hung kernel call must not hold the check. */
const BPFTOOL_TIMEOUT_MS = 30_000;
/** A few hundred bytes per object; systemd hosts hold tens to hundreds. */
const BPFTOOL_MAX_BYTES = 16 * 1024 * 1024;
/**
 * A cgroup's programs are released by a kernel worker after the cgroup is removed, and a program
 * let go is freed after an RCU grace period: new objects are read again after this long, and only
 * those still there count.
 */
const SETTLE_MS = 1_000;

const SEP = '#rw-bpf-sep';
const MISSING = '#rw-bpftool-missing';
/** `bpftool` (given, or in root's PATH, or where Debian puts it). */
const find = (bpftool: string | undefined): string =>
  `B=${bpftool ? shellQuote(bpftool) : '$(command -v bpftool || echo /usr/sbin/bpftool)'}; [ -x "$B" ] || { echo '${MISSING}'; exit 0; }`;
/**
 * One bpftool for the three listings (its batch mode: a third of the time of three processes, which
 * every check pays); `-f` adds the bpffs paths each object is pinned at.
 */
const LIST = `printf 'prog show\\nlink show\\nmap show\\n' | "$B" --json -f batch file -`;
const WHERE = `"$B" --json cgroup tree; echo '${SEP}'; "$B" --json net show`;

type Json = Record<string, unknown>;
type Kind = 'prog' | 'link' | 'map';
interface Listing {
  prog: Json[];
  link: Json[];
  map: Json[];
}

/**
 * The eBPF objects above `since` (all of them when undefined), not PID 1's, through `shell`. With
 * `settle`, objects found new are read again after SETTLE_MS and count only if still there.
 */
export async function readBpf(o: {
  proc: string;
  shell: ToolShell;
  /** The bpftool binary (tests); default: PATH, then /usr/sbin/bpftool. */
  bpftool?: string;
  since?: BpfWatermark;
  settle?: boolean;
  signal?: AbortSignal;
}): Promise<BpfRead> {
  const first = await list(o.shell, o.bpftool, o.signal);
  if ('unreadable' in first) return { objects: {}, unreadable: [first.unreadable] };
  const boot = (readProcFile(path.join(o.proc, 'sys/kernel/random/boot_id')) ?? '').trim();
  // Never below where this read started counting (the highest object may have been freed since).
  const floor = o.since?.boot === boot ? o.since : undefined;
  const watermark: BpfWatermark = {
    boot,
    prog: Math.max(maxId(first.prog), floor?.prog ?? 0),
    link: Math.max(maxId(first.link), floor?.link ?? 0),
    map: Math.max(maxId(first.map), floor?.map ?? 0),
  };
  const held = heldByInit(o.proc, first);
  const fresh = (l: Listing): Listing => ({
    prog: l.prog.filter((j) => num(j.id) > (o.since?.prog ?? 0) && !held.prog.has(num(j.id))),
    link: l.link.filter((j) => num(j.id) > (o.since?.link ?? 0) && !held.link.has(num(j.id))),
    map: l.map.filter((j) => num(j.id) > (o.since?.map ?? 0) && !held.map.has(num(j.id))),
  });
  let found = fresh(first);
  if (o.settle && count(found) > 0) {
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const again = await list(o.shell, o.bpftool, o.signal);
    if ('unreadable' in again) return { objects: {}, watermark, unreadable: [again.unreadable] };
    const still = fresh(again);
    const ids = (k: Kind): Set<number> => new Set(found[k].map((j) => num(j.id)));
    found = {
      prog: still.prog.filter((j) => ids('prog').has(num(j.id))),
      link: still.link.filter((j) => ids('link').has(num(j.id))),
      map: still.map.filter((j) => ids('map').has(num(j.id))),
    };
  }
  if (count(found) === 0) return { objects: {}, watermark, unreadable: [] };
  const where = await attachments(o.shell, o.bpftool, o.signal);
  return { objects: describe(found, where), watermark, unreadable: [] };
}

/** The watermark as the baseline stores it, and back. */
export function formatWatermark(w: BpfWatermark): string {
  return `boot ${w.boot} prog ${w.prog} link ${w.link} map ${w.map}`;
}

export function parseWatermark(s: string | undefined): BpfWatermark | undefined {
  const m = /^boot (\S*) prog (\d+) link (\d+) map (\d+)$/.exec(s ?? '');
  return m ? { boot: m[1] as string, prog: Number(m[2]), link: Number(m[3]), map: Number(m[4]) } : undefined;
}

async function list(shell: ToolShell, bpftool: string | undefined, signal?: AbortSignal): Promise<Listing | { unreadable: string }> {
  const r = await shell.run(`${find(bpftool)}\n${LIST}`, { timeoutMs: BPFTOOL_TIMEOUT_MS, maxBytes: BPFTOOL_MAX_BYTES }, signal);
  if (!r.ok) return { unreadable: `bpf: bpftool: ${r.why}` };
  if (r.stdout.startsWith(MISSING)) return { unreadable: BPFTOOL_MISSING };
  const parts = parseBatch(r.stdout);
  const [prog, link, map] = parts ?? [];
  if (!prog || !link || !map) {
    // When the kernel refuses, bpftool's output is an error object (`[{"error": ...}]`) and the
    // batch stops there: the surface was not read.
    return { unreadable: `bpf: bpftool printed no listing: ${r.stdout.slice(0, 200).replace(/\s+/g, ' ')}` };
  }
  return { prog, link, map };
}

/** The three outputs of the batch (`[{"command": [...], "output": [...]}, ...]`), or undefined if any is missing or an error. */
function parseBatch(text: string): [Json[], Json[], Json[]] | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text.trim());
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 3) return undefined;
  const outs = v.map((c: unknown) => (typeof c === 'object' && c !== null ? (c as Json).output : undefined));
  if (!outs.every((o): o is unknown[] => Array.isArray(o))) return undefined;
  const lists = outs.map((o) => o.filter((x): x is Json => typeof x === 'object' && x !== null));
  if (lists.some((l) => l.some((x) => 'error' in x))) return undefined;
  return lists as [Json[], Json[], Json[]];
}

function parseArray(text: string): Json[] | undefined {
  try {
    const v: unknown = JSON.parse(text.trim());
    return Array.isArray(v) ? (v.filter((x) => typeof x === 'object' && x !== null) as Json[]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The ids PID 1 holds open (`prog_id:`, `map_id:`, `link_id:` in its fdinfo), with the maps its
 * programs use and the links of its programs.
 */
function heldByInit(proc: string, l: Listing): Record<Kind, Set<number>> {
  const out: Record<Kind, Set<number>> = { prog: new Set(), link: new Set(), map: new Set() };
  const dir = path.join(proc, '1');
  for (const fd of listSync(path.join(dir, 'fd'))) {
    const target = linkSync(path.join(dir, 'fd', fd)) ?? '';
    if (!target.startsWith('anon_inode:bpf')) continue;
    const info = readProcFile(path.join(dir, 'fdinfo', fd)) ?? '';
    for (const kind of ['link', 'prog', 'map'] as const) {
      const m = new RegExp(`^${kind}_id:\\s*(\\d+)$`, 'm').exec(info);
      if (m) {
        out[kind].add(Number(m[1]));
        break;
      }
    }
  }
  for (const p of l.prog) if (out.prog.has(num(p.id))) for (const m of arr(p.map_ids)) out.map.add(num(m));
  for (const k of l.link) if (out.prog.has(num(k.prog_id))) out.link.add(num(k.id));
  return out;
}

/** Program id → where it is attached: cgroups (`bpftool cgroup tree`) and interfaces (`net show`). */
async function attachments(shell: ToolShell, bpftool: string | undefined, signal?: AbortSignal): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  const add = (id: number, what: string): void => {
    out.set(id, [...(out.get(id) ?? []), what]);
  };
  const r = await shell.run(`${find(bpftool)}\n${WHERE}`, { timeoutMs: BPFTOOL_TIMEOUT_MS, maxBytes: BPFTOOL_MAX_BYTES }, signal);
  if (!r.ok || r.stdout.startsWith(MISSING)) return out;
  const [cgroups, net] = r.stdout.split(`${SEP}\n`).map(parseArray);
  for (const c of cgroups ?? []) {
    for (const p of arr(c.programs)) add(num(p.id), `cgroup ${str(c.cgroup)} (${str(p.attach_type)})`);
  }
  // One object per namespace read: {"xdp": [...], "tc": [...], "flow_dissector": [...], ...}.
  for (const n of net ?? []) {
    for (const [hook, entries] of Object.entries(n)) {
      for (const e of arr(entries)) {
        const dev = [e.devname, e.kind ?? e.mode].filter((x) => typeof x === 'string').join(' ');
        for (const id of [e.id, ...arr(e.multi_attachments).map((a) => a.id)])
          if (id !== undefined) add(num(id), `${hook}${dev ? ` ${dev}` : ''}`);
      }
    }
  }
  return out;
}

/** One object per program, link and map found. */
function describe(found: Listing, where: Map<number, string[]>): Record<string, string> {
  const out: Record<string, string> = {};
  const linkOf = new Map<number, number[]>();
  for (const k of found.link) linkOf.set(num(k.prog_id), [...(linkOf.get(num(k.prog_id)) ?? []), num(k.id)]);
  const pins = (j: Json): string[] => arr(j.pinned).map((p) => `pinned ${String(p as unknown)}`);
  for (const p of found.prog) {
    const id = num(p.id);
    const at = [...(where.get(id) ?? []).map((w) => `attached ${w}`), ...(linkOf.get(id) ?? []).map((l) => `in link#${l}`), ...pins(p)];
    const key = `bpf:prog#${id} ${str(p.type)} ${str(p.name) || '(unnamed)'} tag ${str(p.tag)} ${at.join(', ') || 'held (a process, a socket or another object)'}`;
    const loaded = typeof p.loaded_at === 'number' ? ` loaded ${new Date(p.loaded_at * 1000).toISOString()}` : '';
    out[key] = `user ${str(p.uid)}${loaded}${arr(p.map_ids).length ? ` maps ${arr(p.map_ids).map(num).join(',')}` : ''}`;
  }
  for (const k of found.link) {
    const extra = Object.entries(k)
      .filter(([f]) => !['id', 'type', 'prog_id', 'pinned', 'pids'].includes(f))
      .map(([f, v]) => `${f} ${typeof v === 'object' ? JSON.stringify(v) : String(v as string)}`);
    out[`bpf:link#${num(k.id)} ${str(k.type)} prog#${num(k.prog_id)} ${[...extra, ...pins(k)].join(', ')}`.trimEnd()] = 'link';
  }
  for (const m of found.map) {
    const at = pins(m).join(', ');
    out[`bpf:map#${num(m.id)} ${str(m.type)} ${str(m.name) || '(unnamed)'} ${at || 'held (a program or a process)'}`] =
      `key ${str(m.bytes_key)} B value ${str(m.bytes_value)} B max ${str(m.max_entries)}`;
  }
  return out;
}

function maxId(l: Json[]): number {
  return l.reduce((m, j) => Math.max(m, num(j.id)), 0);
}

function count(l: Listing): number {
  return l.prog.length + l.link.length + l.map.length;
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v ?? 0) || 0;
}

function str(v: unknown): string {
  return typeof v === 'string' || typeof v === 'number' ? String(v) : '';
}

function arr(v: unknown): Json[] {
  return Array.isArray(v) ? (v as Json[]) : [];
}

/** Ids above every real one: nothing is reported (only the watermark is read). */
const NOTHING: BpfWatermark = { boot: '', prog: Number.MAX_SAFE_INTEGER, link: Number.MAX_SAFE_INTEGER, map: Number.MAX_SAFE_INTEGER };
/** Every object counts (what PID 1 holds aside). */
const EVERYTHING: BpfWatermark = { boot: '', prog: 0, link: 0, map: 0 };

/** The highest ids now, or undefined without bpftool. */
export async function bpfWatermark(
  proc: string,
  shell: ToolShell,
  bpftool: string | undefined,
  signal?: AbortSignal,
): Promise<BpfWatermark | undefined> {
  return (await readBpf({ proc, shell, since: NOTHING, ...(bpftool ? { bpftool } : {}), ...(signal ? { signal } : {}) })).watermark;
}

/**
 * Where a check starts counting eBPF objects. After a job: the watermark taken when it started;
 * without one (an agent restarted during the job), the baseline's when this is the baseline's boot,
 * else every object. At preflight: the baseline's on its boot; after a reboot (which drops every
 * eBPF object; what loads one again at boot is on the file surfaces) the last watermark of a clean
 * check of this agent, or nothing before this agent's first read.
 */
export function checkSince(o: {
  proc: string;
  job: boolean;
  /** The baseline's `bpf:watermark` object. */
  baseline: string | undefined;
  atJobStart?: BpfWatermark;
  lastClean?: BpfWatermark;
}): BpfWatermark {
  const base = parseWatermark(o.baseline);
  const boot = (readProcFile(path.join(o.proc, 'sys/kernel/random/boot_id')) ?? '').trim();
  const sameBoot = base !== undefined && base.boot !== '' && base.boot === boot;
  if (o.job) return o.atJobStart ?? (sameBoot ? base : EVERYTHING);
  return sameBoot ? base : (o.lastClean ?? NOTHING);
}
