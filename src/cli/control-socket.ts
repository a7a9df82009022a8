/**
 * The agent's control socket: a unix socket in the state directory, root-only (0600 in a 0711
 * directory), through which `runner-warden drain` asks the running agent to drain. Only a process
 * that can open the socket (root) can send a request, and it reaches exactly the agent holding the
 * slot's lock (the socket is recreated by each agent after taking the lock), never a pid a stale
 * file names.
 *
 * Protocol: one request line (`drain\n`), one JSON reply line (`{"ok":true,"pid":N}`), then close.
 */
import net from 'node:net';
import { chmod, mkdtemp, rename, rm, unlink } from 'node:fs/promises';
import path from 'node:path';

/** The socket's path in the state directory. */
export function controlSocketPath(stateDir: string): string {
  return path.join(stateDir, 'control.sock');
}

/** A request line is a word; anything longer than this is not ours and the connection is cut. */
const MAX_REQUEST_BYTES = 256;

/** A client that connects and says nothing is cut after this; a real request arrives at once. */
const REQUEST_DEADLINE_MS = 5_000;

/** Only root can connect and `drain` sends one request: a few connections is every legitimate use. */
const MAX_CONTROL_CONNECTIONS = 8;

/** How long `drain` waits for the agent's answer: it only records the request, so 10 s is generous. */
export const CONTROL_REPLY_TIMEOUT_MS = 10_000;

/** What the agent does on each request; returns a detail for the reply. */
export interface ControlHandlers {
  drain(): void;
}

/** A listening control socket. */
export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/**
 * Listens on `file`. The caller must hold the slot's lock: any socket already there is a dead
 * agent's and is replaced.
 */
export async function startControlSocket(file: string, handlers: ControlHandlers, pid: number): Promise<ControlServer> {
  await unlink(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  const server = net.createServer((sock) => {
    let buf = '';
    sock.setTimeout(REQUEST_DEADLINE_MS, () => sock.destroy());
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST_BYTES) return sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const cmd = buf.slice(0, nl).trim();
      if (cmd === 'drain') {
        handlers.drain();
        sock.end(`${JSON.stringify({ ok: true, pid })}\n`);
      } else sock.end(`${JSON.stringify({ ok: false, error: 'unknown request' })}\n`);
    });
  });
  server.maxConnections = MAX_CONTROL_CONNECTIONS;
  // Bound inside a root-only directory, made 0600 there, then renamed into place: between bind and
  // chmod the socket has the umask's mode, and no other user may connect in that window.
  const privateDir = await mkdtemp(path.join(path.dirname(file), '.control-'));
  const bound = path.join(privateDir, 'sock');
  try {
    await chmod(privateDir, 0o700);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(bound, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(bound, 0o600);
    await rename(bound, file);
  } catch (err) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw err;
  } finally {
    await rm(privateDir, { recursive: true, force: true });
  }
  return {
    path: file,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        void unlink(file).catch(() => {});
      }),
  };
}

/** There is no agent listening on the socket (none running, or one from before this version). */
export class NoAgentError extends Error {
  override name = 'NoAgentError';
}

/** Sends one request; resolves with the agent's pid. */
export function sendControl(file: string, request: 'drain'): Promise<{ pid: number }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(file);
    let buf = '';
    sock.setEncoding('utf8');
    sock.setTimeout(CONTROL_REPLY_TIMEOUT_MS, () => sock.destroy(new Error(`no answer within ${CONTROL_REPLY_TIMEOUT_MS} ms`)));
    sock.on('connect', () => sock.write(`${request}\n`));
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > 4096) sock.destroy(new Error('reply too long'));
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(new NoAgentError(`no agent listens on ${file}`));
      else reject(err);
    });
    sock.on('close', () => {
      try {
        const r = JSON.parse(buf.trim()) as { ok?: boolean; pid?: unknown; error?: string };
        if (r.ok === true && typeof r.pid === 'number') resolve({ pid: r.pid });
        else reject(new Error(r.error ?? 'the agent refused the request'));
      } catch {
        reject(new Error('no valid answer from the agent'));
      }
    });
  });
}
