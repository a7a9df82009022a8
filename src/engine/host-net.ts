/**
 * The host's network objects an engine could leave behind: interfaces, named network namespaces
 * and netfilter chains. Taken before the job's engine starts and compared after it was stopped;
 * anything new is the engine's leftover (a rootless engine keeps all of it inside its own
 * namespace, so a difference means something escaped).
 */
import { promises as fsp } from 'node:fs';
import { runCommand } from '../lib/process.js';

/** Listing chains takes milliseconds; a held xtables lock must not stall the job boundary. */
const IPTABLES_TIMEOUT_MS = 10_000;
/** Netfilter tables an engine writes chains into. */
const TABLES = ['filter', 'nat'];

/** A snapshot of names. */
export interface HostNet {
  interfaces: string[];
  netns: string[];
  chains: string[];
}

/** Where the snapshot reads (tests may point them elsewhere). */
export interface HostNetSources {
  sysClassNet: string;
  netnsDir: string;
  /** iptables binary; undefined = chains not checked (no iptables on the host). */
  iptables?: string;
}

export const DEFAULT_HOST_NET_SOURCES: HostNetSources = {
  sysClassNet: '/sys/class/net',
  netnsDir: '/run/netns',
  iptables: 'iptables',
};

/** Takes the snapshot. */
export async function snapshotHostNet(src: HostNetSources = DEFAULT_HOST_NET_SOURCES): Promise<HostNet> {
  const interfaces = (await fsp.readdir(src.sysClassNet).catch(() => [] as string[])).sort();
  const netns = (await fsp.readdir(src.netnsDir).catch(() => [] as string[])).sort();
  const chains: string[] = [];
  if (src.iptables) {
    for (const table of TABLES) {
      const r = await runCommand(src.iptables, ['-w', '5', '-t', table, '-S'], { timeoutMs: IPTABLES_TIMEOUT_MS }).catch(() => undefined);
      if (!r || r.code !== 0) continue;
      for (const line of r.stdout.split('\n')) {
        const m = /^-N (\S+)/.exec(line);
        if (m) chains.push(`${table}/${m[1]}`);
      }
    }
  }
  return { interfaces, netns, chains: chains.sort() };
}

/** What `after` has that `before` has not, one line each. */
export function netAdded(before: HostNet, after: HostNet): string[] {
  const out: string[] = [];
  const add = (kind: string, a: string[], b: string[]): void => {
    const had = new Set(a);
    for (const x of b) if (!had.has(x)) out.push(`${kind} ${x}`);
  };
  add('interface', before.interfaces, after.interfaces);
  add('network namespace', before.netns, after.netns);
  add('netfilter chain', before.chains, after.chains);
  return out;
}
