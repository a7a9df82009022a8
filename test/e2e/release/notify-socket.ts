/**
 * A stand-in for systemd's notification socket: a unix datagram socket (Node has none, so
 * python3 binds it) that records every message with its arrival time, as systemd would see them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';

const SERVER = `
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
out = open(sys.argv[2], 'a', buffering=1)
while True:
    data = s.recv(4096).decode()
    out.write('%d %s\\n' % (int(time.time() * 1000), ' '.join(data.split('\\n')).strip()))
`;

/** One received datagram: arrival (ms since the epoch) and its variables. */
export interface NotifyMessage {
  at: number;
  vars: string[];
}

/** The running socket; `messages()` reads what arrived so far. */
export interface NotifySocket {
  path: string;
  messages(): Promise<NotifyMessage[]>;
  close(): Promise<void>;
}

/** Binds `<dir>/notify.sock` and records into `<dir>/notify.log`. */
export async function startNotifySocket(dir: string): Promise<NotifySocket> {
  const sock = path.join(dir, 'notify.sock');
  const log = path.join(dir, 'notify.log');
  const child: ChildProcess = spawn('python3', ['-c', SERVER, sock, log], { stdio: ['ignore', 'ignore', 'inherit'] });
  // python3 starts in tens of milliseconds, seconds on a loaded machine.
  for (let i = 0; i < 1200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
  if (!existsSync(sock)) throw new Error('the notify socket stand-in did not bind');
  return {
    path: sock,
    async messages() {
      const text = await readFile(log, 'utf8').catch(() => '');
      return text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => {
          const [at, ...vars] = l.split(' ');
          return { at: Number(at), vars };
        });
    },
    async close() {
      child.kill('SIGKILL');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    },
  };
}
