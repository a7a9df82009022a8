/**
 * The few Docker Engine API calls the containers step and verify make, over the engine's unix
 * socket with node:http (no CLI: the docker binary may be missing, and it reads the job-writable
 * DOCKER_CONFIG). Works against dockerd and podman's Docker-compatible service.
 */
import http from 'node:http';

/**
 * One request's time limit: the engine answers list and delete calls in milliseconds; a forced
 * removal of a running container waits for its kill, seconds at most. A hung engine must not hold
 * the whole cleanup.
 */
export const DOCKER_REQUEST_TIMEOUT_MS = 30_000;
/** Answers kept at most; a list of 100,000 containers would still fit. */
const MAX_BODY_BYTES = 64 << 20;

/** An error answer of the engine (status and its message). */
export class DockerApiError extends Error {
  override name = 'DockerApiError';
  constructor(
    message: string,
    readonly status: number,
    readonly endpoint: string,
  ) {
    super(message);
  }
}

/** The engine's /version answer (fields used). */
export interface EngineVersion {
  Version: string;
  ApiVersion: string;
  MinAPIVersion?: string;
}

/** A container as listed. */
export interface ContainerSummary {
  Id: string;
  Names?: string[];
  Image?: string;
  /** Unix seconds. */
  Created: number;
  State?: string;
}

/** A volume as listed. */
export interface VolumeSummary {
  Name: string;
  /** RFC 3339. */
  CreatedAt?: string;
}

/** A network as listed. */
export interface NetworkSummary {
  Id: string;
  Name: string;
  /** RFC 3339 (nanoseconds). */
  Created?: string;
  Driver?: string;
}

/** An image as listed. */
export interface ImageSummary {
  Id: string;
  RepoTags?: string[] | null;
  /** Unix seconds. */
  Created: number;
  Size?: number;
}

/** Networks every engine has and that are never removed. */
export const PREDEFINED_NETWORKS = new Set(['bridge', 'host', 'none', 'podman']);

/** A client for one engine socket. */
export class DockerApi {
  private prefix = '';

  constructor(
    readonly socketPath: string,
    private readonly signal?: AbortSignal,
  ) {}

  /** Probes the engine and pins the API version it speaks (at most 1.41, which both engines know). */
  async version(): Promise<EngineVersion> {
    const v = (await this.call('GET', '/version')) as EngineVersion;
    const pinned = minVersion(v.ApiVersion, '1.41');
    this.prefix = `/v${pinned}`;
    return v;
  }

  /** Every container, running or not. */
  async containers(): Promise<ContainerSummary[]> {
    return (await this.call('GET', '/containers/json?all=1')) as ContainerSummary[];
  }

  /** Removes a container with its anonymous volumes, killing it first; false when already gone. */
  async removeContainer(id: string): Promise<boolean> {
    return this.del(`/containers/${encodeURIComponent(id)}?force=1&v=1`);
  }

  async volumes(): Promise<VolumeSummary[]> {
    const r = (await this.call('GET', '/volumes')) as { Volumes: VolumeSummary[] | null };
    return r.Volumes ?? [];
  }

  async removeVolume(name: string): Promise<boolean> {
    return this.del(`/volumes/${encodeURIComponent(name)}?force=1`);
  }

  async networks(): Promise<NetworkSummary[]> {
    return (await this.call('GET', '/networks')) as NetworkSummary[];
  }

  async removeNetwork(id: string): Promise<boolean> {
    return this.del(`/networks/${encodeURIComponent(id)}`);
  }

  async images(): Promise<ImageSummary[]> {
    return (await this.call('GET', '/images/json?all=0')) as ImageSummary[];
  }

  async removeImage(id: string): Promise<boolean> {
    return this.del(`/images/${encodeURIComponent(id)}?force=1&noprune=0`);
  }

  /** Prunes the whole build cache; returns the bytes reclaimed. */
  async pruneBuildCache(): Promise<number> {
    const r = (await this.call('POST', '/build/prune?all=1')) as { SpaceReclaimed?: number };
    return r.SpaceReclaimed ?? 0;
  }

  private async del(p: string): Promise<boolean> {
    try {
      await this.call('DELETE', p);
      return true;
    } catch (err) {
      // Already gone is an outcome, not an error.
      if (err instanceof DockerApiError && err.status === 404) return false;
      throw err;
    }
  }

  /** One request; resolves with the parsed JSON body (or undefined for an empty one). */
  call(method: string, p: string): Promise<unknown> {
    const endpoint = `${this.prefix}${p}`;
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          path: endpoint,
          method,
          headers: { host: 'docker', 'content-type': 'application/json' },
          timeout: DOCKER_REQUEST_TIMEOUT_MS,
          ...(this.signal ? { signal: this.signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_BODY_BYTES) req.destroy(new Error('engine answer too large'));
            else chunks.push(c);
          });
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            let body: unknown;
            try {
              body = text.trim() === '' ? undefined : JSON.parse(text);
            } catch {
              body = text;
            }
            if (status >= 200 && status < 300) resolve(body);
            else {
              const msg = (body as { message?: string } | undefined)?.message ?? `HTTP ${status}`;
              reject(new DockerApiError(msg, status, `${method} ${p.split('?')[0]}`));
            }
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`engine did not answer within ${DOCKER_REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(method === 'POST' ? '{}' : undefined);
    });
  }
}

function minVersion(a: string, b: string): string {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 2; i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x < y ? a : b;
  }
  return a;
}

/** True when an error means "there is no engine on that socket" (absent, refused, not a socket). */
export function isNoEngine(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK' || code === 'EACCES';
}
