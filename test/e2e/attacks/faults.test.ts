/**
 * docs/hostile-jobs.md 17-19: the job kills the listener, fills the disk, and hunts for the agent's token
 * and the next runner's JIT configuration. 4-8 s each, run concurrently.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, statfsSync } from 'node:fs';
import path from 'node:path';
import { attack, assertNoTrace, assertNotReused, type AttackCtx } from './helpers.js';
import { decodeJitConfig } from '../../../src/sim/github/jit.js';
import type { JobStep } from '../../../src/sim/github/types.js';

/**
 * Free space the watermark leaves below the current free share, in percentage points: on the
 * 252 GB test disk 0.3 points are ~750 MB, more than other tests on the machine write meanwhile.
 */
const WATERMARK_MARGIN_POINTS = 0.3;
/** The fill file, in percentage points of the disk: three times the margin, so it always crosses. */
const FILL_POINTS = 1;
/** Attack 19's rounds at most (0.25 s apart) while it waits for the prefetch: 60 s and more. */
const PREFETCH_ROUNDS_MAX = 240;

describe('faults a job causes on purpose', { concurrency: 3 }, () => {
  test('17. SIGKILL of the listener mid-job: the host is cleaned and the next job finds nothing', async (t) => {
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'leave things, then kill the listener',
          run: [
            'echo "$MARK" > leftover.txt; echo "$MARK" > "$REAL_HOME/.leftover-$MARK"; echo "$MARK" > "$SYS_TMP/left-$MARK"',
            'mkdir -p "$HOME/.docker" && echo "{\\"auths\\":{\\"x\\":{\\"auth\\":\\"$MARK\\"}}}" > "$HOME/.docker/config.json"',
            '(exec -a "after-crash-$MARK" sleep 300 &)',
            'kill -9 $(pgrep -u "$(id -u)" -f "Runner.Listener|listener.(ts|mjs)" | head -n 5)',
            'sleep 30',
          ].join('\n'),
        },
      ],
    });
    assert.equal(r.jobs[0]?.listenerSignal, 'SIGKILL', 'the listener was not killed by the job');
    await assertNoTrace(r, { firstResult: 'crashed' });
  });

  test('18. a job that fills the disk past the policy watermark gets the host recycled, not reused', async (t) => {
    let fillBytes = 0;
    const r = await attack(t, {
      policy: (c) => {
        // Not the real disk full: the watermark is set just under the free share measured now.
        const s = statfsSync(c.w.lab.root);
        const free = (s.bavail / s.blocks) * 100;
        fillBytes = Math.ceil((s.blocks * s.bsize * FILL_POINTS) / 100);
        return { limits: { minFreeDiskPercent: Math.max(0, free - WATERMARK_MARGIN_POINTS) } };
      },
      hostile: (c) => [
        {
          name: 'fill the disk',
          // Outside every path the agent cleans (a cache or log elsewhere): the disk stays full after cleanup.
          run: `fallocate -l ${fillBytes} "$DROP/fill-$MARK"\nhead -c 1048576 /dev/zero > "$GITHUB_WORKSPACE/big-${c.marker}"`,
        },
      ],
    });
    await assertNotReused(r);
    assert.match(
      `${r.jobs[0]?.decisionReason} ${r.jobs[0]?.cleanup.verify.problems.join(' ')}`,
      /disk/i,
      'the decision should say the disk is below the watermark',
    );
    await fsp.rm(path.join(r.c.w.dropDir, `fill-${r.c.marker}`), { force: true });
  });

  test("19. a job searching env, /proc, readable files and the health endpoint finds neither the agent token nor a later runner's JIT config", async (t) => {
    const dump = (c: AttackCtx): JobStep[] => [
      {
        name: 'hunt for secrets',
        run: [
          `LAB=${c.w.lab.root}`,
          `DROP=${c.w.dropDir}`,
          `HEALTH=${c.health.host}:${c.health.port}`,
          'OUT="$DROP/dump-$GITHUB_RUN_ID"; mkdir -p "$OUT"',
          // Every process's environment and command line (one cat: the secrets are searched as bytes,
          // NUL separators and all), and every health path.
          'round() {',
          '  env > "$OUT/env.$1"',
          '  cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline > "$OUT/proc.$1" 2>/dev/null || true',
          '  for u in /status /metrics /healthz /readyz /; do curl -s "http://$HEALTH$u"; done > "$OUT/health.$1" 2>/dev/null || true',
          '}',
          // Rounds while the agent registers the next runner (prefetch, at job start), until the test
          // has seen that registration issued, then one more: a round always runs after it.
          `for i in $(seq 1 ${PREFETCH_ROUNDS_MAX}); do round $i; [ -e "$DROP/prefetched-$GITHUB_RUN_ID" ] && break; sleep 0.25; done`,
          'round last',
          // Every readable file of the host the job can reach that may hold it (not the drop dir, not the big trees).
          'find "$LAB" /etc /run "$HOME" "$TMPDIR" -xdev -path "$DROP" -prune -o -type f -readable -size -4M -exec cat {} + > "$OUT/files" 2>/dev/null || true',
          'ls -laR "$LAB" > "$OUT/listing" 2>/dev/null || true',
        ].join('\n'),
      },
    ];
    const r = await attack(t, {
      world: { runner: { prefetch: true } },
      hostile: (c) => dump(c),
      secondJob: (c) => dump(c),
      // Tells each job once a runner newer than its own has been issued a JIT config.
      during: async (c, signal) => {
        for (const runId of ['1', '2']) {
          while (!signal.aborted) {
            const own = c.w.fake.jobs().find((j) => String(j.job.runId) === runId && j.status !== 'queued')?.runnerId;
            const newer = c.w.fake.requests.some(
              (q) =>
                /generate-jitconfig/.test(q.path) &&
                q.status === 201 &&
                (q.resBody as { runner: { id: number } }).runner.id > (own ?? Infinity),
            );
            if (newer) {
              await fsp.writeFile(path.join(c.w.dropDir, `prefetched-${runId}`), '');
              break;
            }
            await new Promise((res) => setTimeout(res, 50));
          }
        }
      },
    });
    assert.equal(r.jobs.length, 2, `both jobs should run: ${r.exit.reason}`);
    const issued = r.c.w.fake.requests
      .filter((q) => /generate-jitconfig/.test(q.path) && q.status === 201)
      .map((q) => {
        const body = q.resBody as { runner: { id: number }; encoded_jit_config: string };
        const files = decodeJitConfig(body.encoded_jit_config);
        const rsa = JSON.parse(files['.credentials_rsaparams'] ?? '{}') as Record<string, string>;
        const creds = JSON.parse(files['.credentials'] ?? '{}') as { data?: { clientId?: string } };
        return {
          id: body.runner.id,
          at: q.at,
          secrets: [body.encoded_jit_config, rsa.d ?? '', rsa.p ?? '', rsa.q ?? '', creds.data?.clientId ?? ''].filter((s) => s.length > 8),
        };
      });
    for (const [i, j] of r.jobs.entries()) {
      const own = issued.find((x) => x.id === j.runnerId);
      assert.ok(own, `no JIT config was issued for the runner of job ${i + 1}`);
      const later = issued.filter((x) => x.id > (j.runnerId ?? 0));
      const jobEnd = Date.parse(j.endedAt);
      assert.ok(
        later.some((x) => x.at < jobEnd),
        `no later runner was registered while job ${i + 1} ran (prefetch off?)`,
      );
      const dir = path.join(r.c.w.dropDir, `dump-${i + 1}`);
      const texts = await Promise.all((await fsp.readdir(dir)).map(async (f) => [f, await fsp.readFile(path.join(dir, f))] as const));
      // The search works: the job can read its own runner's registration (the runner needs it).
      assert.ok(
        texts.some(([, b]) => own.secrets.some((s) => b.includes(s))),
        `job ${i + 1} could not even find its own runner's credentials; the search proves nothing`,
      );
      for (const [f, b] of texts) {
        assert.equal(b.includes(r.c.w.fake.defaultToken), false, `job ${i + 1} found the agent's GitHub token in ${f}`);
        for (const x of later) {
          for (const s of x.secrets) {
            assert.equal(b.includes(s), false, `job ${i + 1} found part of runner ${x.id}'s JIT config (a later runner) in ${f}`);
          }
        }
      }
    }
  });
});
