/**
 * Host mode's policy-enforcing proxy: a unix socket the agent owns, handed to the job as
 * DOCKER_HOST, in front of the host's engine. Container creates are checked against
 * `docker.allow` (denied by default) and refused with a message naming the key that would allow
 * them; requests that grant privilege some other way (privileged exec, plugin installs, swarm
 * services, container updates of devices) are refused outright. Everything else, including
 * attach and exec streams (HTTP upgrades), is passed through unchanged.
 *
 * It is only a boundary while the runner user cannot reach the host's socket directly (not in
 * the docker group); the guard says so when it can.
 */
import http from 'node:http';
import net from 'node:net';
import { promises as fsp } from 'node:fs';
import { askFromHostConfig, checkCreate, describeRefusals, type DockerAllow } from './create-policy.js';

/** A create body is a few KiB; a megabyte is far beyond any legitimate one. */
const MAX_CREATE_BODY = 1 << 20;

/** Paths refused whatever the policy (privilege without a create). */
const ALWAYS_REFUSED = [
  /^\/plugins\/(pull|create|[^/]+\/(enable|upgrade|set))/,
  /^\/(swarm|services|secrets|configs|nodes)\b/,
  /^\/containers\/[^/]+\/update$/,
];

/** The proxy's settings. */
export interface ProxyOptions {
  /** Socket the job gets (created here, owned by `owner`, mode 0600). */
  listen: string;
  /** The host engine's socket. */
  upstream: string;
  allow: DockerAllow;
  workspaceRoots: string[];
  owner: { uid: number; gid: number };
}

/** A running proxy; close() stops it and removes its socket. */
export interface ApiProxy {
  readonly socket: string;
  /** Refusals so far (for the job's record). */
  readonly refused: string[];
  close(): Promise<void>;
}

/** The API path without its /v1.xx prefix and query. */
function route(url: string): string {
  return (url.split('?')[0] ?? '').replace(/^\/v\d+\.\d+/, '');
}

function refuse(res: http.ServerResponse, message: string): void {
  res.writeHead(403, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify({ message })}\n`);
}

/** Starts the proxy. */
export async function startApiProxy(o: ProxyOptions): Promise<ApiProxy> {
  await fsp.rm(o.listen, { force: true });
  const refused: string[] = [];
  const forward = (req: http.IncomingMessage, res: http.ServerResponse, body?: Buffer): void => {
    const up = http.request({ socketPath: o.upstream, path: req.url, method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      // Long polls (/wait, /events) answer their headers at once and the body later; the CLI
      // waits for those headers before it starts the container.
      res.flushHeaders();
      upRes.pipe(res);
    });
    up.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify({ message: `engine unreachable: ${err.message}` })}\n`);
    });
    if (body) up.end(body);
    else req.pipe(up);
  };
  const server = http.createServer((req, res) => {
    const p = route(req.url ?? '');
    if (ALWAYS_REFUSED.some((r) => r.test(p))) {
      const msg = `${req.method} ${p} is not allowed through runner-warden's engine proxy (docker.mode: host)`;
      refused.push(msg);
      refuse(res, msg);
      return;
    }
    const isCreate = req.method === 'POST' && p === '/containers/create';
    const isExec = req.method === 'POST' && /^\/containers\/[^/]+\/exec$/.test(p);
    if (!isCreate && !isExec) {
      forward(req, res);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_CREATE_BODY) chunks.push(c);
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      let doc: Record<string, unknown>;
      try {
        doc = size > MAX_CREATE_BODY ? {} : (JSON.parse(body.toString('utf8') || '{}') as Record<string, unknown>);
      } catch {
        refuse(res, 'the create request is not JSON');
        return;
      }
      const ask = isCreate
        ? askFromHostConfig(doc.HostConfig as Record<string, unknown> | undefined)
        : { ...askFromHostConfig({}), privileged: doc.Privileged === true };
      const refusals =
        size > MAX_CREATE_BODY ? [{ asked: 'a create request over 1 MiB', key: 'none' }] : checkCreate(ask, o.allow, o.workspaceRoots);
      if (refusals.length > 0) {
        const msg = describeRefusals(refusals);
        refused.push(msg);
        refuse(res, msg);
        return;
      }
      forward(req, res, body);
    });
  });
  // attach, exec start, logs follow: the CLI upgrades the connection; splice the raw sockets.
  server.on('upgrade', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const upstream = net.connect(o.upstream, () => {
      const headers = Object.entries(req.headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : (v ?? '')}`);
      upstream.write(`${req.method} ${req.url} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    const end = (): void => {
      upstream.destroy();
      client.destroy();
    };
    upstream.on('error', end);
    client.on('error', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen, () => resolve());
  });
  await fsp.chown(o.listen, o.owner.uid, o.owner.gid);
  await fsp.chmod(o.listen, 0o600);
  return {
    socket: o.listen,
    refused,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await fsp.rm(o.listen, { force: true });
    },
  };
}
