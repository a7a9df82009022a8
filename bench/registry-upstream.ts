/**
 * A registry upstream for bench/engine.ts (and the mirror test): Debian's docker-registry on a
 * loopback port, a counting front that records every blob fetch it serves, and a push of an image
 * built from a root filesystem tar through the registry API (no engine needed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { RegistryMirror } from '../src/engine/mirror.js';

/** A free loopback port (bound, then released). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A plain registry (no auth) serving `storage` on 127.0.0.1:port. */
export interface Upstream {
  /** URL of the counting front (what the mirror is pointed at). */
  url: string;
  /** URL of the registry itself, behind no front and no pacing (a bench's floor: a plain local registry). */
  registryUrl: string;
  /** Blob GETs served per digest. */
  blobFetches: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * Starts a registry and a counting front before it. `bytesPerSecond` paces blob bodies the way a
 * remote registry's bandwidth would (the bench's stand-in for Docker Hub); unpaced by default.
 */
export async function startUpstream(root: string, bytesPerSecond?: number): Promise<Upstream> {
  const dir = path.join(root, 'upstream');
  await fsp.mkdir(dir, { recursive: true });
  const port = await freePort();
  const config = path.join(dir, 'config.yml');
  await fsp.writeFile(
    config,
    JSON.stringify({
      version: 0.1,
      log: { level: 'warn' },
      storage: { filesystem: { rootdirectory: path.join(dir, 'data') } },
      http: { addr: `127.0.0.1:${port}` },
    }),
  );
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { detached: true, stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  for (let i = 0; i < 200; i++) {
    if (
      await fetch(`http://127.0.0.1:${port}/v2/`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const blobFetches = new Map<string, number>();
  const front = http.createServer((req, res) => {
    const m = /\/blobs\/(sha256:[0-9a-f]{64})/.exec(req.url ?? '');
    if (m && req.method === 'GET') blobFetches.set(m[1] as string, (blobFetches.get(m[1] as string) ?? 0) + 1);
    const up = http.request({ host: '127.0.0.1', port, path: req.url, method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      if (!bytesPerSecond || !m) {
        upRes.pipe(res);
        return;
      }
      const started = Date.now();
      let sent = 0;
      upRes.on('data', (chunk: Buffer) => {
        sent += chunk.length;
        res.write(chunk);
        const ahead = (sent / bytesPerSecond) * 1000 - (Date.now() - started);
        if (ahead > 0) {
          upRes.pause();
          setTimeout(() => upRes.resume(), ahead);
        }
      });
      upRes.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  const frontPort = (front.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${frontPort}`,
    registryUrl: `http://127.0.0.1:${port}`,
    blobFetches,
    async stop() {
      front.closeAllConnections();
      await new Promise<void>((r) => front.close(() => r()));
      if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, 'SIGKILL');
      await exited;
    },
  };
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Pushes a single-layer image made of `rootfsTar` as `repo:tag`; returns the layer's digest. */
export async function pushImage(
  registry: string,
  repo: string,
  tag: string,
  rootfsTar: Buffer,
): Promise<{ layer: string; manifest: string }> {
  const layer = gzipSync(rootfsTar, { level: 1 });
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [sha(rootfsTar)] },
      history: [{ created_by: 'runner-warden test' }],
    }),
  );
  for (const blob of [layer, config]) {
    const start = await fetch(`${registry}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`upload start ${start.status}`);
    const loc = new URL(start.headers.get('location') ?? '', registry);
    loc.searchParams.set('digest', sha(blob));
    const put = await fetch(loc, { method: 'PUT', body: blob, headers: { 'content-type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`upload ${put.status}: ${await put.text()}`);
  }
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha(config) },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha(layer) }],
    }),
  );
  const res = await fetch(`${registry}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    body: manifest,
    headers: { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json' },
  });
  if (res.status !== 201) throw new Error(`manifest ${res.status}: ${await res.text()}`);
  return { layer: sha(layer), manifest: sha(manifest) };
}

/** A started image cache storing in `storage`, in front of `upstream`, on free loopback ports. */
export async function startMirror(storage: string, upstream: string, capBytes = 10 << 30): Promise<RegistryMirror> {
  const m = new RegistryMirror({
    listen: `127.0.0.1:${await freePort()}`,
    debugListen: `127.0.0.1:${await freePort()}`,
    storage,
    upstream,
    capBytes,
  });
  await m.start();
  return m;
}
