/**
 * Warm images on the agent's /metrics (warm-images.ts), read from the engine guard's totals at
 * scrape time:
 *
 *   runner_warden_engine_warm_pulls_total{outcome=done|failed}   warm pulls into job engines
 *   runner_warden_engine_warm_dropped_total                      entries a job's engine reported that were refused
 */
import { Counter, type Registry } from 'prom-client';
import type { WarmTotals } from './warm-images.js';

/** Registers the warm-image counters on `registry`. */
export function registerWarmImageMetrics(registry: Registry, totals: () => WarmTotals): void {
  const registers = [registry];
  new Counter({
    name: 'runner_warden_engine_warm_pulls_total',
    help: 'Images the agent pulled into a job’s engine through the image cache before the job asked (policy docker.warm), by outcome.',
    labelNames: ['outcome'],
    registers,
    collect() {
      const t = totals();
      this.reset();
      this.inc({ outcome: 'done' }, t.done);
      this.inc({ outcome: 'failed' }, t.failed);
    },
  });
  new Counter({
    name: 'runner_warden_engine_warm_dropped_total',
    help: 'Image references a job’s engine reported at the end of the job that were refused (malformed, or not Docker Hub by digest).',
    registers,
    collect() {
      this.reset();
      this.inc(totals().dropped);
    },
  });
}
