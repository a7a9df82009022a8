/**
 * Who holds a TCP port in LISTEN state, from /proc: the socket's owner uid and inode from
 * /proc/net/tcp and tcp6, and the processes of that uid (cleanup's scan) whose descriptors name the inode (read with
 * readlink only: `socket:[inode]`, never opened). The agent uses it when its health port is taken at
 * start: a process a job left while the agent was down must not keep answering the agent's probes.
 */
import { readFile, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { processesOfUid } from '../cleanup/proc.js';

/** One listening socket on the port. */
export interface PortHolder {
  uid: number;
  inode: number;
  /** Processes (of `uid`, when the caller asked) holding a descriptor to the socket. */
  pids: number[];
}

/** Descriptors read per process: a job's process with more is still found if it binds early; this bounds the scan. */
const MAX_FDS_PER_PROCESS = 4096;

const LISTEN = '0A';

/** Listening sockets on `port` (any address, IPv4 and IPv6): their uid and inode, with no pids yet. */
export async function listeningSockets(port: number, procRoot = '/proc'): Promise<{ uid: number; inode: number }[]> {
  const out: { uid: number; inode: number }[] = [];
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(path.join(procRoot, 'net', table), 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== LISTEN) continue;
      const localPort = parseInt((f[1] ?? '').split(':')[1] ?? '', 16);
      if (localPort !== port) continue;
      out.push({ uid: Number(f[7]), inode: Number(f[9]) });
    }
  }
  return out;
}

/** Listening sockets on `port` owned by one of `uids`, each with the pids (of those uids) holding it. */
export async function portHolders(port: number, uids: ReadonlySet<number>, procRoot = '/proc'): Promise<PortHolder[]> {
  const socks = (await listeningSockets(port, procRoot)).filter((s) => uids.has(s.uid));
  if (socks.length === 0) return [];
  const byInode = new Map(socks.map((s) => [s.inode, { ...s, pids: [] as number[] }]));
  // The processes of those uids by any of their four uids, as cleanup finds them (zombies hold no descriptor).
  const procs = (await Promise.all([...uids].map((u) => processesOfUid(u, procRoot)))).flat();
  for (const name of new Set(procs.map((p) => String(p.pid)))) {
    const fdDir = path.join(procRoot, name, 'fd');
    const fds = (await readdir(fdDir).catch(() => [] as string[])).slice(0, MAX_FDS_PER_PROCESS);
    for (const fd of fds) {
      const target = await readlink(path.join(fdDir, fd)).catch(() => '');
      const m = /^socket:\[(\d+)\]$/.exec(target);
      const holder = m ? byInode.get(Number(m[1])) : undefined;
      if (holder && !holder.pids.includes(Number(name))) holder.pids.push(Number(name));
    }
  }
  return [...byInode.values()];
}
