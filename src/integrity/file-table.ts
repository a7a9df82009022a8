/**
 * The file entries of a baseline in a compact form. A runner image with toolchains holds hundreds
 * of thousands of entries (this development host: 268,000 under /root alone); one object per entry
 * cost ~450 bytes each and the agent's resident size grew past 500 MiB. Here an entry is one row
 * of typed arrays: its numbers, its directory (each directory's path interned once), its name's
 * UTF-8 bytes in a shared pool and its hash in another; an open-addressing index of row numbers
 * finds it by directory and name. No JavaScript object or string per entry: ~110 bytes a row.
 * Looked up by full host path.
 */
import { randomBytes } from 'node:crypto';
import type { FileMeta, SurfaceName } from './types.js';

/** Rows allocated at first; the arrays double when full. */
const INITIAL_ROWS = 1024;
/** The bytes of a sha256 digest. */
const HASH_BYTES = 32;
const TYPES = ['f', 'd', 'l', 'o'] as const;

/** Path → metadata of every recorded entry, with the surface it belongs to. */
export class FileTable {
  /** Directory path → id: each directory string is held once, not in every entry's path. */
  private readonly dirs = new Map<string, number>();
  private readonly dirNames: string[] = [];
  private readonly surfaceNames: SurfaceName[] = [];
  private rows = 0;
  private cap = 0;
  /** ino, size, mtimeMs, ctimeMs per row. */
  private f64 = new Float64Array(0);
  /** uid, gid, directory id, name offset in `names` per row. */
  private u32 = new Uint32Array(0);
  /** mode, name length per row. */
  private u16 = new Uint16Array(0);
  /** type index, surface index per row. */
  private u8 = new Uint8Array(0);
  /** Offset of the row's hash in `pool`, or -1. */
  private hashAt = new Int32Array(0);
  private pool = new Uint8Array(0);
  private poolUsed = 0;
  private names = Buffer.alloc(0);
  private namesUsed = 0;
  /** Open addressing (linear probing): row + 1, 0 for empty; at most half full. */
  private slots = new Int32Array(0);
  /** A per-table seed: file names a job chooses cannot be made to collide on purpose. */
  private readonly seed = randomBytes(4).readUInt32LE(0);
  private readonly links = new Map<number, string>();

  /** Entries recorded. */
  get size(): number {
    return this.rows;
  }

  /** The row of `p`, or undefined. */
  row(p: string): number | undefined {
    const cut = p.lastIndexOf('/');
    const dir = this.dirs.get(cut <= 0 ? '/' : p.slice(0, cut));
    if (dir === undefined || this.rows === 0) return undefined;
    const name = Buffer.from(p.slice(cut + 1), 'utf8');
    const mask = this.slots.length - 1;
    for (let i = this.hashOf(dir, name, name.length) & mask; ; i = (i + 1) & mask) {
      const r = (this.slots[i] as number) - 1;
      if (r < 0) return undefined;
      if (this.u32[r * 4 + 2] === dir && this.nameEquals(r, name)) return r;
    }
  }

  /** Records `p`; an entry already recorded is replaced (its row kept). Returns the row. */
  set(p: string, m: FileMeta, surface: SurfaceName): number {
    let r = this.row(p);
    if (r === undefined) {
      const cut = p.lastIndexOf('/');
      const dirPath = cut <= 0 ? '/' : p.slice(0, cut);
      let dir = this.dirs.get(dirPath);
      if (dir === undefined) {
        dir = this.dirNames.length;
        // A copy: a slice of the walk's path string would keep the whole path alive.
        const own = Buffer.from(dirPath, 'utf8').toString('utf8');
        this.dirs.set(own, dir);
        this.dirNames.push(own);
      }
      r = this.rows++;
      if (r >= this.cap) this.grow();
      const name = Buffer.from(p.slice(cut + 1), 'utf8');
      if (this.namesUsed + name.length > this.names.length) {
        const next = Buffer.alloc(Math.max(this.names.length * 2, this.namesUsed + name.length, 16 * INITIAL_ROWS));
        this.names.copy(next, 0, 0, this.namesUsed);
        this.names = next;
      }
      name.copy(this.names, this.namesUsed);
      this.u32[r * 4 + 2] = dir;
      this.u32[r * 4 + 3] = this.namesUsed;
      this.u16[r * 2 + 1] = name.length;
      this.namesUsed += name.length;
      this.place(r);
    }
    this.f64[r * 4] = m.ino;
    this.f64[r * 4 + 1] = m.size;
    this.f64[r * 4 + 2] = m.mtimeMs;
    this.f64[r * 4 + 3] = m.ctimeMs;
    this.u32[r * 4] = m.uid;
    this.u32[r * 4 + 1] = m.gid;
    this.u16[r * 2] = m.mode;
    this.u8[r * 2] = TYPES.indexOf(m.type);
    this.u8[r * 2 + 1] = this.surfaceIndex(surface);
    this.hashAt[r] = -1;
    if (m.hash !== undefined && /^[0-9a-f]{64}$/.test(m.hash)) {
      if (this.poolUsed + HASH_BYTES > this.pool.length) {
        const next = new Uint8Array(Math.max(this.pool.length * 2, HASH_BYTES * INITIAL_ROWS));
        next.set(this.pool.subarray(0, this.poolUsed));
        this.pool = next;
      }
      this.pool.set(Buffer.from(m.hash, 'hex'), this.poolUsed);
      this.hashAt[r] = this.poolUsed;
      this.poolUsed += HASH_BYTES;
    }
    if (m.link !== undefined) this.links.set(r, m.link);
    else this.links.delete(r);
    return r;
  }

  /** The full host path of a row. */
  path(r: number): string {
    const dir = this.dirNames[this.u32[r * 4 + 2] as number] as string;
    const at = this.u32[r * 4 + 3] as number;
    const name = this.names.toString('utf8', at, at + (this.u16[r * 2 + 1] as number));
    return dir === '/' ? `/${name}` : `${dir}/${name}`;
  }

  surface(r: number): SurfaceName {
    return this.surfaceNames[this.u8[r * 2 + 1] as number] as SurfaceName;
  }

  /** The metadata of a row as an object (made on demand: only for what is reported or written). */
  meta(r: number): FileMeta {
    const m: FileMeta = {
      type: TYPES[this.u8[r * 2] as number] as FileMeta['type'],
      ino: this.f64[r * 4] as number,
      size: this.f64[r * 4 + 1] as number,
      mode: this.u16[r * 2] as number,
      uid: this.u32[r * 4] as number,
      gid: this.u32[r * 4 + 1] as number,
      mtimeMs: this.f64[r * 4 + 2] as number,
      ctimeMs: this.f64[r * 4 + 3] as number,
    };
    const link = this.links.get(r);
    if (link !== undefined) m.link = link;
    const h = this.hashAt[r] as number;
    if (h >= 0) m.hash = Buffer.from(this.pool.subarray(h, h + HASH_BYTES)).toString('hex');
    return m;
  }

  /** Whether `m` has the same type, inode, size, mode, owner, times and link target as row `r` (no object made). */
  sameStat(r: number, m: FileMeta): boolean {
    const b = r * 4;
    return (
      TYPES[this.u8[r * 2] as number] === m.type &&
      this.links.get(r) === m.link &&
      this.f64[b] === m.ino &&
      this.f64[b + 1] === m.size &&
      this.f64[b + 2] === m.mtimeMs &&
      this.f64[b + 3] === m.ctimeMs &&
      this.u16[r * 2] === m.mode &&
      this.u32[r * 4] === m.uid &&
      this.u32[r * 4 + 1] === m.gid
    );
  }

  /** Gives back the arrays' unused capacity (after a baseline was read or walked whole). */
  trim(): void {
    this.resize(this.rows);
    this.pool = this.pool.slice(0, this.poolUsed);
    this.names = Buffer.from(this.names.subarray(0, this.namesUsed));
    let slots = 2;
    while (slots < this.rows * 2) slots *= 2;
    this.slots = new Int32Array(slots);
    for (let r = 0; r < this.rows; r++) this.place(r);
  }

  /** FNV-1a of the directory id and the name's bytes, from the table's seed. */
  private hashOf(dir: number, name: Uint8Array, len: number, at = 0): number {
    let h = (0x811c9dc5 ^ this.seed) >>> 0;
    h = Math.imul(h ^ dir, 0x01000193);
    for (let i = at; i < at + len; i++) h = Math.imul(h ^ (name[i] as number), 0x01000193);
    return h >>> 0;
  }

  private nameEquals(r: number, name: Buffer): boolean {
    const at = this.u32[r * 4 + 3] as number;
    return this.u16[r * 2 + 1] === name.length && this.names.compare(name, 0, name.length, at, at + name.length) === 0;
  }

  /** Puts row `r` into the index (which has room: it is kept at most half full). */
  private place(r: number): void {
    const mask = this.slots.length - 1;
    let i = this.hashOf(this.u32[r * 4 + 2] as number, this.names, this.u16[r * 2 + 1] as number, this.u32[r * 4 + 3]) & mask;
    while (this.slots[i] !== 0) i = (i + 1) & mask;
    this.slots[i] = r + 1;
  }

  private surfaceIndex(s: SurfaceName): number {
    let i = this.surfaceNames.indexOf(s);
    if (i < 0) i = this.surfaceNames.push(s) - 1;
    return i;
  }

  private grow(): void {
    this.resize(Math.max(INITIAL_ROWS, this.cap * 2));
    // The index at most half full: rebuilt at twice the rows' capacity.
    this.slots = new Int32Array(this.cap * 2);
    for (let r = 0; r < this.rows - 1; r++) this.place(r);
  }

  private resize(cap: number): void {
    const n = Math.min(cap, this.rows);
    const f64 = new Float64Array(cap * 4);
    f64.set(this.f64.subarray(0, n * 4));
    const u32 = new Uint32Array(cap * 4);
    u32.set(this.u32.subarray(0, n * 4));
    const u16 = new Uint16Array(cap * 2);
    u16.set(this.u16.subarray(0, n * 2));
    const u8 = new Uint8Array(cap * 2);
    u8.set(this.u8.subarray(0, n * 2));
    const hashAt = new Int32Array(cap);
    hashAt.set(this.hashAt.subarray(0, n));
    [this.f64, this.u32, this.u16, this.u8, this.hashAt, this.cap] = [f64, u32, u16, u8, hashAt, cap];
  }
}
