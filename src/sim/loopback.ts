/**
 * Starts a fake's server on 127.0.0.1 at a free port; `close` stops it and cuts the connections a
 * client kept alive, so a test never waits on a keep-alive socket. `close` is an arrow over the
 * server (no `this`), so callers may destructure it.
 */
import type http from 'node:http';
import type https from 'node:https';
import type { AddressInfo } from 'node:net';

export async function listenOnLoopback(server: http.Server | https.Server): Promise<{ port: number; close: () => Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
