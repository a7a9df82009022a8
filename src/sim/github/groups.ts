/** The organisation's runner groups in the fake GitHub: a fixed list given at start. */
import type { FakeRunnerGroup } from './types.js';

/** The runner groups; `list` is live (a test may add a group to it). */
export class RunnerGroups {
  readonly list: FakeRunnerGroup[];

  constructor(groups: FakeRunnerGroup[]) {
    this.list = groups.map((g) => ({ ...g }));
  }

  /** The group with this id, or undefined. */
  byId(id: number): FakeRunnerGroup | undefined {
    return this.list.find((g) => g.id === id);
  }

  /** The group with this name (case-insensitive), or undefined. */
  byName(name: string): FakeRunnerGroup | undefined {
    return this.list.find((g) => g.name.toLowerCase() === name.toLowerCase());
  }

  /** The group marked default, else the first; config.sh without --runnergroup lands here. */
  default(): FakeRunnerGroup {
    const g = this.list.find((x) => x.default) ?? this.list[0];
    if (!g) throw new Error('the fake needs at least one runner group');
    return g;
  }
}
