/**
 * docs/hostile-jobs.md 20: with a Docker engine reachable by the job, the containers (one with
 * --restart=always), volumes, networks and images it made are removed; what the admin had before
 * stays. Starts a real dockerd confined to its own root (test/helpers/dockerd.ts): ~10 s, most of
 * it dockerd's start and stop. Skipped, saying why, where dockerd cannot start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { attack, assertNoTrace } from './helpers.js';
import { startDockerd, importBusybox, type Dockerd } from '../../helpers/dockerd.js';
import { DockerApi } from '../../../src/cleanup/docker-api.js';

test("20. a running container, a volume, a network and an image left by the job are removed; the admin's image, volume and network stay", async (t) => {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'rw-attack-docker-'));
  const started = await startDockerd(root);
  if (!started.ok) {
    await fsp.rm(root, { recursive: true, force: true });
    t.skip(`dockerd could not start here: ${started.reason}`);
    return;
  }
  const d: Dockerd = started.dockerd;
  t.after(async () => {
    const api = new DockerApi(d.socket);
    await api.version().catch(() => undefined);
    for (const c of await api.containers().catch(() => [])) await api.removeContainer(c.Id).catch(() => undefined);
    for (const n of await api.networks().catch(() => []))
      if (!['none', 'host'].includes(n.Name)) await api.removeNetwork(n.Id).catch(() => undefined);
    await d.stop();
    await fsp.rm(root, { recursive: true, force: true });
  });
  await importBusybox(d, root, 'envlab/busybox:latest');
  await d.docker('volume', 'create', 'admin-cache');
  await d.docker('network', 'create', '--internal', 'admin-net');
  const before = (await d.docker('images', '--format', '{{.Repository}}:{{.Tag}}')).split('\n').sort();

  const r = await attack(t, {
    setup: async (c) => {
      // The job reaches the host engine as the runner user, as in docker.mode host (the usual `docker` group).
      await fsp.chmod(root, 0o711);
      await fsp.chmod(path.dirname(d.socket), 0o711);
      await fsp.chown(d.socket, 0, c.w.lab.user.gid);
      await fsp.chmod(d.socket, 0o660);
      // Engines stamp creation to the second: the job's resources must be younger than the admin's.
      await new Promise((res) => setTimeout(res, 1_100));
    },
    policy: () => ({ docker: { mode: 'host' }, cleanup: { containers: { socket: d.socket, images: 'job' } } }),
    hostile: () => [
      {
        name: 'leave docker state',
        run: [
          `export DOCKER_HOST=unix://${d.socket}`,
          'docker network create --internal "net-$MARK"',
          'docker volume create "vol-$MARK"',
          'docker run -d --name "ctr-$MARK" --restart=always --network "net-$MARK" -v "vol-$MARK:/data" envlab/busybox sleep 600',
          'docker run --rm -v "vol-$MARK:/data" envlab/busybox sh -c "echo $MARK > /data/secret"',
          'docker run -d --name "ctr2-$MARK" --label "evil=$MARK" -v admin-cache:/cache envlab/busybox sh -c "echo $MARK > /cache/planted-$MARK; sleep 600"',
          'docker create --name "created-$MARK" envlab/busybox',
          'docker commit "ctr2-$MARK" "job/built:$MARK"',
          'docker volume create "vol2-$MARK"',
          'test "$(docker ps -q | wc -l)" -ge 2',
        ].join('\n'),
      },
    ],
    probeExtra: () =>
      [
        `export DOCKER_HOST=unix://${d.socket}`,
        'docker ps -a --format "container {{.Names}}"',
        'docker volume inspect admin-cache > /dev/null 2>&1 || echo "the admin volume admin-cache is gone"',
        'docker volume ls -q | grep -vx admin-cache | sed "s/^/volume /"',
        'docker network ls --format "{{.Name}}" | grep -vxE "admin-net|host|none" | sed "s/^/network /"',
        'docker images --format "{{.Repository}}:{{.Tag}}" | grep -vx "envlab/busybox:latest" | sed "s/^/image /"',
        'docker volume inspect admin-cache > /dev/null 2>&1 && docker run --rm -v admin-cache:/cache envlab/busybox ls /cache | sed "s/^/admin-cache holds /"',
      ].join('\n'),
  });
  t.diagnostic(`containers step: ${JSON.stringify(r.jobs[0]?.cleanup.steps.find((s) => s.name === 'containers'))}`);
  // The job wrote into the admin's volume: that volume stays (it is not the job's), and so does what the job put there.
  const extra = r.extra.split('\n').filter((l) => l !== '' && !l.startsWith('admin-cache holds planted-'));
  assert.deepEqual(extra, [], 'the second job saw docker state of the first');
  await assertNoTrace({ ...r, extra: '' });
  const api = new DockerApi(d.socket);
  await api.version();
  const after = (await d.docker('images', '--format', '{{.Repository}}:{{.Tag}}')).split('\n').sort();
  assert.deepEqual(after, before, 'the images are not what the admin had before the job');
  assert.deepEqual(
    (await api.volumes()).map((v) => v.Name),
    ['admin-cache'],
    'the admin volume went, or a job volume stayed',
  );
  assert.ok(
    (await api.networks()).some((n) => n.Name === 'admin-net'),
    'the admin network was removed',
  );
  assert.deepEqual(
    (await api.containers()).map((c) => c.Names?.[0]),
    [],
    'a container is left',
  );
});
