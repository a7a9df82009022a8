import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A registry that answers only the login probe (`GET /v2/`), on loopback. */
export interface FakeRegistry {
  /** host:port, as `docker login` takes it. */
  host: string;
  /** Authorization headers received, in order. */
  seen: (string | undefined)[];
  close(): Promise<void>;
}

/**
 * Starts a Node HTTP server on 127.0.0.1 (port 0) that answers `/v2/` with 401 and
 * `WWW-Authenticate: Basic realm=...` unless the request carries Basic auth for `user:pass`, then 200.
 * Enough for the docker CLI and skopeo to log in (loopback counts as an insecure registry).
 */
export async function startFakeRegistry(user: string, pass: string): Promise<FakeRegistry> {
  const good = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  const seen: (string | undefined)[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers.authorization);
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    if (req.url === '/v2/' || req.url === '/v2') {
      if (req.headers.authorization === good) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      } else {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="fake-registry"', 'content-type': 'application/json' });
        res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      }
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
