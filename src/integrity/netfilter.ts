/**
 * Netfilter rules of the reading process's network namespace, from `iptables-save`,
 * `ip6tables-save` and `nft list ruleset` where installed: `netfilter:<tool> <table> <rule>`.
 * Packet counters are dropped so traffic alone is never drift.
 */
import { runCommand } from '../lib/process.js';

/** A dump of a few hundred rules takes milliseconds; a wedged netlink call must not hold the check. */
export const NETFILTER_TIMEOUT_MS = 5_000;

/** The tools tried, in order; a missing one is skipped (ENOENT), a failing one is reported. */
const TOOLS: [string, string[]][] = [
  ['iptables-save', []],
  ['ip6tables-save', []],
  ['nft', ['list', 'ruleset']],
];

/** Reads every installed tool's rules; `unreadable` names a tool that failed. */
export async function readNetfilter(signal?: AbortSignal): Promise<{ objects: Record<string, string>; unreadable: string[] }> {
  const objects: Record<string, string> = {};
  const unreadable: string[] = [];
  const results = await Promise.all(
    TOOLS.map(async ([cmd, args]) => {
      try {
        return { cmd, r: await runCommand(cmd, args, { timeoutMs: NETFILTER_TIMEOUT_MS, ...(signal ? { signal } : {}) }) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        unreadable.push(`netfilter: ${cmd}: ${String(err)}`);
        return undefined;
      }
    }),
  );
  for (const x of results) {
    if (!x) continue;
    if (x.r.code !== 0) {
      unreadable.push(`netfilter: ${x.cmd} exited ${x.r.code ?? x.r.signal}: ${x.r.stderr.trim().slice(0, 200)}`);
      continue;
    }
    const seen = new Map<string, number>();
    const add = (key: string): void => {
      const n = (seen.get(key) ?? 0) + 1;
      seen.set(key, n);
      objects[n === 1 ? key : `${key} #${n}`] = 'present';
    };
    if (x.cmd === 'nft') {
      const ctx: string[] = [];
      for (const raw of x.r.stdout.split('\n')) {
        const line = raw.trim();
        if (!line) continue;
        if (line === '}') {
          ctx.pop();
          continue;
        }
        if (line.endsWith('{')) {
          ctx.push(line.slice(0, -1).trim());
          continue;
        }
        add(`netfilter:nft ${ctx.join(' / ')} ${line.replace(/counter packets \d+ bytes \d+/g, 'counter')}`);
      }
    } else {
      let table = '';
      for (const raw of x.r.stdout.split('\n')) {
        const line = raw.trim();
        if (!line || line.startsWith('#') || line === 'COMMIT') continue;
        if (line.startsWith('*')) {
          table = line.slice(1);
          continue;
        }
        add(`netfilter:${x.cmd.replace('-save', '')} ${table} ${line.replace(/ \[\d+:\d+\]$/, '').replace(/^\[\d+:\d+\] /, '')}`);
      }
    }
  }
  return { objects, unreadable };
}
