/**
 * Systemd's word on the units whose processes are never drift (the daily timers' and cron's, and
 * logind's session scopes). A unit's name comes from the process's cgroup path, and a root job can
 * make a cgroup of any name and move its daemon there; so a process started since the job and left
 * out only for its unit counts unless systemd itself says that unit is real and the process is in
 * its cgroup. Asked only when such a process exists (a timer that fired during the job, or a job
 * hiding), so a check usually starts no systemctl.
 */
import type { UnitClaim } from './kernel-state.js';
import { shellQuote, type ToolShell } from './tool-shell.js';

/** systemctl answers from PID 1 in milliseconds; a wedged manager must not hold the check. */
export const SYSTEMCTL_TIMEOUT_MS = 5_000;
/** A few units' properties are a few hundred bytes. */
const SYSTEMCTL_MAX_BYTES = 1 << 20;

/**
 * The objects of every claim systemd does not confirm: the unit unknown or stopped, its control
 * group another, or no systemd at all (systemctl fails: a host without it has no such unit).
 */
export async function unconfirmedUnits(
  claims: readonly UnitClaim[],
  shell: ToolShell,
  signal?: AbortSignal,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  if (claims.length === 0) return out;
  const units = [...new Set(claims.map((c) => c.unit))];
  const r = await shell.run(
    `systemctl show -p Id -p ControlGroup -- ${units.map(shellQuote).join(' ')}`,
    { timeoutMs: SYSTEMCTL_TIMEOUT_MS, maxBytes: SYSTEMCTL_MAX_BYTES },
    signal,
  );
  const groups = new Map<string, string>();
  if (r.ok) {
    for (const block of r.stdout.split(/\n\n+/)) {
      const id = /^Id=(.*)$/m.exec(block)?.[1];
      const cg = /^ControlGroup=(.+)$/m.exec(block)?.[1];
      if (id && cg) groups.set(id, cg);
    }
  }
  for (const c of claims) {
    const cg = groups.get(c.unit);
    if (cg !== undefined && (c.cgroup === cg || c.cgroup.startsWith(`${cg}/`))) continue;
    for (const [k, v] of Object.entries(c.objects)) out[k] ??= v;
  }
  return out;
}
