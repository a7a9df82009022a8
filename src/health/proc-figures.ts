/**
 * CPU load and memory use read from /proc, as systeminformation computes them on Linux, without
 * loading that package: it evaluates about thirty modules (0.4 MiB of code, several MiB of heap)
 * at import, and an idle agent needs two numbers every 15 s.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { HostSources } from './host-figures.js';

/** The CPU times of /proc/stat's first line that count as idle. */
interface CpuTimes {
  total: number;
  idle: number;
}

async function cpuTimes(procDir: string): Promise<CpuTimes> {
  const line = (await readFile(path.join(procDir, 'stat'), 'utf8')).split('\n', 1)[0] ?? '';
  const fields = line.trim().split(/\s+/);
  if (fields[0] !== 'cpu' || fields.length < 5)
    throw new Error(`${procDir}/stat: expected a "cpu" line first, got ${JSON.stringify(line.slice(0, 60))}`);
  // user nice system idle iowait irq softirq steal (guest time is already inside user and nice).
  const t = fields.slice(1, 9).map(Number);
  if (t.some((x) => !Number.isFinite(x)))
    throw new Error(`${procDir}/stat: expected numbers on the cpu line, got ${JSON.stringify(line.slice(0, 80))}`);
  return { total: t.reduce((a, b) => a + b, 0), idle: t[3] ?? 0 };
}

/**
 * The /proc-backed CPU and memory sources. CPU load is the busy share of all CPU time since the
 * previous call (the first call: since boot), as systeminformation's currentLoad; memory use counts
 * MemAvailable as free (reclaimable cache is what a job can get).
 */
export function procSources(procDir = '/proc'): Pick<HostSources, 'cpuLoadPercent' | 'memUsedPercent'> {
  let last: CpuTimes = { total: 0, idle: 0 };
  return {
    async cpuLoadPercent() {
      const now = await cpuTimes(procDir);
      const total = now.total - last.total;
      const idle = now.idle - last.idle;
      last = now;
      return total > 0 ? ((total - idle) / total) * 100 : undefined;
    },
    async memUsedPercent() {
      const text = await readFile(path.join(procDir, 'meminfo'), 'utf8');
      const kib = (key: string): number | undefined => {
        const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text);
        return m ? Number(m[1]) : undefined;
      };
      const total = kib('MemTotal');
      const available = kib('MemAvailable');
      if (total === undefined || available === undefined || total === 0) return undefined;
      return ((total - available) / total) * 100;
    },
  };
}
