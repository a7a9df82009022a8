/**
 * The host's image cache: Debian's `docker-registry` (distribution 2.8) in proxy mode, as the
 * pull-through mirror of every per-job engine. A proxy-mode registry serves pulls only (pushes
 * are refused with "unsupported"), and it stores only what its upstream served, by digest: a job
 * can make it fetch, never make it hold something the upstream does not. Production runs it as a
 * systemd service (packaging/systemd/runner-warden-mirror.service); tests and the demo run it as
 * a supervised child through {@link RegistryMirror}.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { runCommand, signalGroup, waitForChild } from '../lib/process.js';
import { sweepMirror, type SweepResult } from './mirror-janitor.js';

/** The registry answers /v2/ within a second of starting; ten covers a loaded host. */
export const MIRROR_START_TIMEOUT_MS = 10_000;
/** `du` over a cache of a few hundred thousand files; slower means a sick disk, report it. */
const DU_TIMEOUT_MS = 60_000;
/** The registry flushes uploads on SIGTERM within a second; then it is killed. */
const MIRROR_STOP_GRACE_MS = 5_000;

/** What the mirror needs. */
export interface MirrorOptions {
  /** host:port it listens on (engines reach a loopback mirror through slirp4netns's 10.0.2.2). */
  listen: string;
  /** host:port of its debug server (expvar counters at /debug/vars); loopback only. */
  debugListen: string;
  /** Storage root (the cache). */
  storage: string;
  /**
   * The upstream registry, e.g. https://registry-1.docker.io. It must answer /v2/ when the
   * registry starts: distribution 2.8 in proxy mode asks it for its auth scheme at start and
   * exits (a panic) when it cannot. None: a plain registry, not a cache (the demo's stand-in upstream).
   */
  upstream: string | undefined;
  /** Size cap in bytes; over it the least recently used blobs are pruned (src/engine/mirror-janitor.ts). */
  capBytes: number;
}

/** The registry configuration for `opts` (JSON is YAML, which docker-registry reads). */
export function mirrorConfig(opts: MirrorOptions): string {
  return `${JSON.stringify(
    {
      version: 0.1,
      log: { level: 'warn', fields: { service: 'runner-warden-mirror' } },
      // No in-memory blob descriptor cache: the agent prunes blobs while the registry serves, and a
      // cached descriptor of a pruned blob would fail its read instead of fetching it again.
      storage: { filesystem: { rootdirectory: opts.storage }, delete: { enabled: true } },
      http: { addr: opts.listen, debug: { addr: opts.debugListen }, headers: { 'X-Content-Type-Options': ['nosniff'] } },
      ...(opts.upstream ? { proxy: { remoteurl: opts.upstream } } : {}),
    },
    null,
    2,
  )}\n`;
}

/** The mirror's counters (distribution's expvar `registry.proxy`). */
export interface MirrorStats {
  blobHits: number;
  blobMisses: number;
  blobBytesPulled: number;
  manifestHits: number;
  manifestMisses: number;
  /** Blob and manifest bytes sent to engines (distribution 2.8 counts a blob's bytes twice per GET). */
  bytesServed: number;
  /** Manifest bytes fetched from the upstream (2.8 never counts blob bytes pulled: always 0). */
  manifestBytesPulled: number;
}

/** Reads the counters from the debug server; undefined when it does not answer. */
export async function mirrorStats(debugListen: string, signal?: AbortSignal): Promise<MirrorStats | undefined> {
  try {
    const res = await fetch(`http://${debugListen}/debug/vars`, { signal: signal ?? AbortSignal.timeout(5_000) });
    const vars = (await res.json()) as { registry?: { proxy?: Record<string, Record<string, number>> } };
    const p = vars.registry?.proxy ?? {};
    return {
      blobHits: p.blobs?.Hits ?? 0,
      blobMisses: p.blobs?.Misses ?? 0,
      blobBytesPulled: p.blobs?.BytesPulled ?? 0,
      manifestHits: p.manifests?.Hits ?? 0,
      manifestMisses: p.manifests?.Misses ?? 0,
      bytesServed: (p.blobs?.BytesPushed ?? 0) + (p.manifests?.BytesPushed ?? 0),
      manifestBytesPulled: p.manifests?.BytesPulled ?? 0,
    };
  } catch {
    return undefined;
  }
}

/** Bytes under `dir` (0 when absent). */
export async function cacheBytes(dir: string): Promise<number> {
  const r = await runCommand('du', ['-sb', '--', dir], { timeoutMs: DU_TIMEOUT_MS }).catch(() => undefined);
  return r && r.code === 0 ? Number(r.stdout.split('\t')[0]) || 0 : 0;
}

/** Thrown when the mirror does not come up. */
export class MirrorError extends Error {
  override readonly name = 'MirrorError';
}

/** The mirror as a supervised child of the agent (demo) or of a test. */
export class RegistryMirror {
  private child: ChildProcess | undefined;
  private done: Promise<{ code: number | null; signal: NodeJS.Signals | null }> = Promise.resolve({ code: null, signal: null });

  constructor(
    readonly opts: MirrorOptions,
    private readonly binary = 'docker-registry',
  ) {}

  /** The URL engines are given (policy `docker.mirror`). */
  get url(): string {
    return `http://${this.opts.listen}`;
  }

  /** Writes the config next to the storage and starts the registry; resolves once /v2/ answers. */
  async start(): Promise<void> {
    await fsp.mkdir(this.opts.storage, { recursive: true, mode: 0o700 });
    const config = path.join(path.dirname(this.opts.storage), 'mirror-config.yml');
    await fsp.writeFile(config, mirrorConfig(this.opts), { mode: 0o600 });
    const child = spawn(this.binary, ['serve', config], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    child.on('error', () => undefined);
    this.child = child;
    this.done = waitForChild(child);
    const deadline = Date.now() + MIRROR_START_TIMEOUT_MS;
    while (Date.now() < deadline && child.exitCode === null) {
      const ok = await fetch(`${this.url}/v2/`, { signal: AbortSignal.timeout(1_000) }).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    await this.stop();
    throw new MirrorError(`registry mirror did not answer on ${this.opts.listen}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }

  /** The running registry's pid (undefined when none runs). */
  get pid(): number | undefined {
    return this.child?.exitCode === null ? this.child.pid : undefined;
  }

  /** Settles when the registry started last exits (at once when none runs): its exit code or signal. */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.done;
  }

  /** Stops the registry (its process group). */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child?.pid || child.exitCode !== null) return;
    signalGroup(child.pid, 'SIGTERM');
    const t = setTimeout(() => child.pid && signalGroup(child.pid, 'SIGKILL'), MIRROR_STOP_GRACE_MS);
    await this.done;
    clearTimeout(t);
  }

  /** One sweep of the cache against its cap while it serves (least recently used blobs first). */
  enforceCap(now = Date.now(), inUseMs?: number): Promise<SweepResult> {
    return sweepMirror(this.opts.storage, this.opts.capBytes, now, inUseMs);
  }
}
