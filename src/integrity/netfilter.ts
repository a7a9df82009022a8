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

/** The script that runs one tool: its output preceded by `RS<tool> <exit code>`; nothing when it is not on PATH. */
const toolScript = ([cmd, args]: [string, string[]]): string =>
  `if command -v ${cmd} >/dev/null 2>&1; then out=$(${[cmd, ...args].join(' ')} 2>/dev/null); printf '${RS}%s %s\\n%s\\n' ${cmd} $? "$out"; fi`;

/** Every installed tool in turn, in one shell: one child per call (readNetfilter, without a kept shell). */
const SCRIPT = TOOLS.map(toolScript).join('\n');

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
 * The tools run in shells kept for the agent's lifetime (tool-shell.ts): the check starts no child
 * of its own. One shell per tool, so the tools run at the same time: each is a process of its own
 * (~7 ms of exec and netlink dump each on the development machine), and their wall time beside the
 * walk is the longest of them, not the sum. A shell is killed and started again when a request
 * times out or it is gone (a root job may kill it; the next check starts another).
 */
export class NetfilterShell {
  private readonly shells = TOOLS.map(() => new ToolShell());

  /** The rules now; requests are served one at a time per tool. */
  async read(signal?: AbortSignal): Promise<{ objects: Record<string, string>; unreadable: string[] }> {
    const limits = { timeoutMs: NETFILTER_TIMEOUT_MS, maxBytes: MAX_OUTPUT_BYTES };
    const results = await Promise.all(TOOLS.map((t, i) => (this.shells[i] as ToolShell).run(toolScript(t), limits, signal)));
    const failed = results.find((r) => !r.ok);
    if (failed && !failed.ok) return { objects: {}, unreadable: [`netfilter: ${failed.why}`] };
    // In TOOLS order, as one shell would have printed them.
    return parseNetfilter(results.map((r) => (r.ok ? r.stdout : '')).join(''));
  }

  /** Ends the shells (tests; the agent's exit ends them anyway). */
  close(): void {
    for (const s of this.shells) s.close();
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
