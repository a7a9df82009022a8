import assert from 'node:assert/strict';
import test from 'node:test';
import { performanceMisuse } from '../../../scripts/build.js';

test("the bundle's performance stand-in is refused for anything but now()", () => {
  assert.equal(performanceMisuse('const t = performance.now(); f(performance.now() - t);'), undefined);
  for (const use of ['performance.mark("a")', 'performance.timeOrigin', 'globalThis.performance.now()', 'performance["now"]()']) {
    assert.ok(performanceMisuse(`x = ${use};`), `${use} should fail the build: the stand-in has now() only`);
  }
});
