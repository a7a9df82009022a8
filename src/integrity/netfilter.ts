/**
 * Netfilter rules of the reading process's network namespace, from `iptables-save`,
 * `ip6tables-save` and `nft list ruleset` where installed: `netfilter:<tool> <table> <rule>`.
 * Packet counters are dropped so traffic alone is never drift.
 */
import { runCommand } from '../lib/process.js';
import { ToolShell } from './tool-shell.js';

/** A dump of a few hundred rules takes milliseconds; a wedged netlink call must not hold the check. */
export const NETFILTER_TIMEOUT_MS = 5_000;

/** The tools tried, in order; a missing one is skipped, a failing one is reported. */
const TOOLS: [string, string[]][] = [
  ['iptables-save', []],
  ['ip6tables-save', []],
  ['nft', ['list', 'ruleset']],
];

/** Separates the tools' outputs: a record separator, which none of them prints. */
const RS = '\u001e';

/**
 * One shell runs every installed tool in turn: a child process is started once per check, not
 * once per tool (starting a child from a large process is the costliest step of the whole check).
 * Each output is preceded by `RS<tool> <exit code>`; a tool not on PATH prints nothing.
 */
const SCRIPT = TOOLS.map(
  ([cmd, args]) =>
    `if command -v ${cmd} >/dev/null 2>&1; then out=$(${[cmd, ...args].join(' ')} 2>/dev/null); printf '${RS}%s %s\\n%s\\n' ${cmd} $? "$out"; fi`,
).join('\n');

/** Reads every installed tool's rules once (a child shell for this call); `unreadable` names a tool that failed. */
export async function readNetfilter(signal?: AbortSignal): Promise<{ objects: Record<string, string>; unreadable: string[] }> {
  try {
    const r = await runCommand('sh', ['-c', SCRIPT], { timeoutMs: NETFILTER_TIMEOUT_MS, ...(signal ? { signal } : {}) });
    const out = parseNetfilter(r.stdout);
    if (r.code !== 0) out.unreadable.push(`netfilter: sh exited ${r.code ?? r.signal}: ${r.stderr.trim().slice(0, 200)}`);
    return out;
  } catch (err) {
    return { objects: {}, unreadable: [`netfilter: ${String(err)}`] };
  }
}

/**
 * The tools run in a shell kept for the agent's lifetime (tool-shell.ts): the check starts no child
 * of its own. Killed and started again when a request times out or the shell is gone (a root job
 * may kill it; the next check starts another).
 */
export class NetfilterShell {
  private readonly shell = new ToolShell();

  /** The rules now; requests are served one at a time. */
  async read(signal?: AbortSignal): Promise<{ objects: Record<string, string>; unreadable: string[] }> {
    const r = await this.shell.run(SCRIPT, { timeoutMs: NETFILTER_TIMEOUT_MS, maxBytes: MAX_OUTPUT_BYTES }, signal);
    return r.ok ? parseNetfilter(r.stdout) : { objects: {}, unreadable: [`netfilter: ${r.why}`] };
  }

  /** Ends the shell (tests; the agent's exit ends it anyway). */
  close(): void {
    this.shell.close();
  }
}

/** Rules printed at most: thousands of rules; a runaway tool must not fill the agent's memory. */
const MAX_OUTPUT_BYTES = 16 << 20;

/** The tools' outputs as objects; a tool that failed is named in `unreadable`. */
export function parseNetfilter(stdout: string): { objects: Record<string, string>; unreadable: string[] } {
  const objects: Record<string, string> = {};
  const unreadable: string[] = [];
  const results: { cmd: string; r: { code: number; stdout: string } }[] = [];
  for (const rec of stdout.split(RS).slice(1)) {
    const nl = rec.indexOf('\n');
    const [cmd = '', code = ''] = rec.slice(0, nl).split(' ');
    results.push({ cmd, r: { code: Number(code), stdout: rec.slice(nl + 1) } });
  }
  for (const x of results) {
    if (x.r.code !== 0) {
      unreadable.push(`netfilter: ${x.cmd} exited ${x.r.code}`);
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
