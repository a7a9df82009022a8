/**
 * What a Docker-compatible engine holds before a job starts. Objects not in it afterwards are the
 * job's. Creation times are not enough: the local volume driver rewrites a volume's CreatedAt
 * when a container mounts it, so a job that merely used an admin's volume would have it deleted.
 */
import { existsSync } from 'node:fs';
import type { Clock } from '../lib/clock.js';
import { describeError } from '../lib/errors.js';
import { DockerApi, isNoEngine } from './docker-api.js';
import { underDeadline } from '../lib/deadline.js';

/** Ids (containers, networks, images) and names (volumes) present before the job. */
export interface EngineInventory {
  containers: string[];
  volumes: string[];
  networks: string[];
  images: string[];
}

/** Takes the inventory; undefined when no engine answers on `socket` (nothing to protect). */
export async function takeEngineInventory(socket: string, signal: AbortSignal): Promise<EngineInventory | undefined> {
  const api = new DockerApi(socket, signal);
  try {
    await api.version();
  } catch (err) {
    if (isNoEngine(err)) return undefined;
    throw err;
  }
  const [containers, volumes, networks, images] = await Promise.all([api.containers(), api.volumes(), api.networks(), api.images()]);
  return {
    containers: containers.map((c) => c.Id),
    volumes: volumes.map((v) => v.Name),
    networks: networks.map((n) => n.Id),
    images: images.map((i) => i.Id),
  };
}

/** One engine `version` call may take this long; a local daemon answers in milliseconds. */
const ENGINE_PING_TIMEOUT_MS = 5_000;
/** Between attempts while waiting for the engine. */
const ENGINE_PING_INTERVAL_MS = 1_000;

/**
 * Waits for the engine on `socket` to answer, as the runner's own RUNNER_WAIT_FOR_DOCKER_IN_SECONDS
 * does (docs/runner-contract.md): at boot dockerd often starts after the agent. No socket file means no
 * engine on this host, which is fine. Returns undefined when ready (or aborted), else the problem.
 */
export async function waitForEngine(socket: string, waitMs: number, clock: Clock, signal: AbortSignal): Promise<string | undefined> {
  if (!existsSync(socket)) return undefined;
  const deadline = clock.now() + waitMs;
  for (;;) {
    let problem: string;
    try {
      await underDeadline(ENGINE_PING_TIMEOUT_MS, [signal], (s) => new DockerApi(socket, s).version());
      return undefined;
    } catch (err) {
      if (signal.aborted) return undefined;
      problem = describeError(err);
    }
    if (clock.now() >= deadline) {
      return `the container engine at ${socket} did not answer within ${Math.round(waitMs / 1000)} s (${problem})`;
    }
    try {
      await clock.sleep(ENGINE_PING_INTERVAL_MS, signal);
    } catch {
      return undefined;
    }
  }
}

/**
 * One look at the engine on `socket` for the health figures: undefined when the host has none (no
 * socket file), else whether it answers, with its version or the error.
 */
export async function probeEngine(
  socket: string,
  signal: AbortSignal,
): Promise<{ up: boolean; version?: string; error?: string } | undefined> {
  if (!existsSync(socket)) return undefined;
  try {
    const v = await underDeadline(ENGINE_PING_TIMEOUT_MS, [signal], (s) => new DockerApi(socket, s).version());
    return { up: true, ...(v.Version ? { version: v.Version } : {}) };
  } catch (err) {
    return { up: false, error: describeError(err) };
  }
}
