import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { RecycleEvent } from '../../../src/recycle/port.js';

/** A recycle event as the agent would send it after a host's last job. */
export function sampleEvent(over: Partial<RecycleEvent> = {}): RecycleEvent {
  return {
    reason: 'max-jobs',
    host: 'runner-host-1',
    runnerName: 'runner-host-1-7',
    runnerId: 42,
    team: 'payments',
    jobsServed: 1,
    lastJob: { repository: 'octo/app', runId: '123', job: 'build', result: 'succeeded' },
    at: '2026-01-01T00:00:00.000Z',
    idempotencyKey: 'runner-host-1:boot-1:recycle',
    ...over,
  };
}

/** A temporary root for one test, removed by the returned function. */
export async function tempRoot(): Promise<{ root: string; dispose: () => Promise<void> }> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-recycle-'));
  return { root, dispose: () => rm(root, { recursive: true, force: true }) };
}

/** A signal that never aborts, for calls that are not meant to be cancelled. */
export const never = new AbortController().signal;
