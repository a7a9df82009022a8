/**
 * unconfirmedUnits: a process left out for its unit stays out only when systemd names that unit's
 * control group and the process is in it; systemd's answer is canned here.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { unconfirmedUnits } from '../../../src/integrity/unit-claims.js';
import type { ToolShell, ToolShellResult } from '../../../src/integrity/tool-shell.js';
import type { UnitClaim } from '../../../src/integrity/kernel-state.js';

function shell(answer: ToolShellResult, asked: string[] = []): ToolShell {
  return {
    run: (script: string) => {
      asked.push(script);
      return Promise.resolve(answer);
    },
  } as unknown as ToolShell;
}

const claim = (unit: string, cgroup: string, pid: number): UnitClaim => ({
  unit,
  cgroup,
  objects: { [`process:root:/usr/bin/x#${pid}`]: `pid ${pid} unit ${unit}` },
});

test('only a process inside the control group systemd gives its unit is left out', async () => {
  const asked: string[] = [];
  const answer = {
    ok: true as const,
    stdout:
      "Id=cron.service\nControlGroup=/system.slice/cron.service\n\nId=apt-daily.service\nControlGroup=\n\nId=x'; touch /tmp/y; '.service\nControlGroup=\n",
  };
  const out = await unconfirmedUnits(
    [
      claim('cron.service', '/system.slice/cron.service', 1),
      claim('cron.service', '/system.slice/cron.service/sub', 2),
      claim('cron.service', '/evil/cron.service', 3),
      claim('apt-daily.service', '/system.slice/apt-daily.service', 4),
      claim("x'; touch /tmp/y; '.service", "/x'; touch /tmp/y; '.service", 5),
    ],
    shell(answer, asked),
  );
  assert.deepEqual(Object.keys(out).sort(), ['process:root:/usr/bin/x#3', 'process:root:/usr/bin/x#4', 'process:root:/usr/bin/x#5']);
  assert.equal(asked.length, 1);
  assert.ok(asked[0]?.includes(`'x'\\''; touch /tmp/y; '\\''.service'`), `a unit name reached the shell unquoted: ${asked[0]}`);
});

test('without systemd (systemctl fails) no claim is confirmed; without claims systemctl is not asked', async () => {
  const out = await unconfirmedUnits([claim('cron.service', '/system.slice/cron.service', 7)], shell({ ok: false, why: 'exited 1' }));
  assert.deepEqual(Object.keys(out), ['process:root:/usr/bin/x#7']);
  const asked: string[] = [];
  assert.deepEqual(await unconfirmedUnits([], shell({ ok: true, stdout: '' }, asked)), {});
  assert.deepEqual(asked, []);
});
