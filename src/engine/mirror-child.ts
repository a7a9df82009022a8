/**
 * The image cache as a child process on loopback, for a host without the packaged service (the
 * demo): Debian's docker-registry in proxy mode on two consecutive free ports, the second being
 * its debug server, the layout mirrorDebugAddress (./mirror-metrics.ts) expects of a loopback
 * mirror. Without an upstream it is a plain registry (what the demo uses as its upstream: the
 * proxy needs one that answers when it starts, and the demo runs offline).
 */
import { constants, promises as fsp } from 'node:fs';
import net from 'node:net';
import { RegistryMirror, MirrorError } from './mirror.js';

/** Debian's docker-registry binary (package docker-registry). */
export const REGISTRY_BINARY = '/usr/bin/docker-registry';
/** Two consecutive free ports are found within a few tries; more means the host's ports are exhausted. */
const PORT_TRIES = 20;

/** Whether `port` can be bound on 127.0.0.1 now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A free loopback port whose successor is free too. */
async function portPair(): Promise<number> {
  for (let i = 0; i < PORT_TRIES; i++) {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    if (port < 65535 && (await portFree(port + 1))) return port;
  }
  throw new MirrorError(`no two consecutive free loopback ports in ${PORT_TRIES} tries`);
}

/** What {@link startLoopbackMirror} gives back: the running mirror, or why there is none. */
export type LoopbackMirror = { mirror: RegistryMirror } | { skipped: string };

/**
 * Starts the registry in proxy mode of `upstream` with its store in `storage`, when the binary is
 * installed; a missing binary or a registry that does not come up is a reason, never a throw.
 */
export async function startLoopbackMirror(o: {
  storage: string;
  upstream: string | undefined;
  capBytes: number;
  binary?: string;
}): Promise<LoopbackMirror> {
  const binary = o.binary ?? REGISTRY_BINARY;
  if (
    !(await fsp.access(binary, constants.X_OK).then(
      () => true,
      () => false,
    ))
  )
    return { skipped: `${binary} is not installed (apt-get install docker-registry)` };
  try {
    const port = await portPair();
    const mirror = new RegistryMirror(
      { listen: `127.0.0.1:${port}`, debugListen: `127.0.0.1:${port + 1}`, storage: o.storage, upstream: o.upstream, capBytes: o.capBytes },
      binary,
    );
    await mirror.start();
    return { mirror };
  } catch (err) {
    if (err instanceof MirrorError) return { skipped: err.message };
    throw err;
  }
}
