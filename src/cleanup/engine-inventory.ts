/**
 * What a Docker-compatible engine holds before a job starts. Objects not in it afterwards are the
 * job's. Creation times are not enough: the local volume driver rewrites a volume's CreatedAt
 * when a container mounts it, so a job that merely used an admin's volume would have it deleted.
 */
import { DockerApi, isNoEngine } from './docker-api.js';

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
