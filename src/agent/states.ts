/**
 * The agent's lifecycle (ARCHITECTURE.md). Every change goes through `assertTransition`; the table below
 * is the only place that says which edges exist.
 *
 *  boot ─► recovering ─► preflight ─► registering ─► idle ─► job-running ─► cleaning ─► verifying
 *             (dirty? clean first)        ▲    │       │                                  │
 *                                         │    └───────┴─► (no job / listener failed) ────┤
 *                                         └───────────── reuse ◄── deciding ◄─────────────┘
 *                                                                     │
 *                                         quarantined ◄───────────────┤
 *                                                        recycle ─► recycling ─► stopped
 *  any live state ─► draining (SIGTERM, spot notice) ─► cleaning / recycling / stopped
 *
 *  Quarantine is also a persisted fact (quarantine-store.ts): a boot that finds it goes
 *  boot ─► quarantined and stays there until `runner-warden unquarantine` (─► recovering) or a recycle.
 */
export type AgentState =
  | 'boot'
  | 'recovering'
  | 'preflight'
  | 'registering'
  | 'idle'
  | 'job-running'
  | 'cleaning'
  | 'verifying'
  | 'deciding'
  | 'draining'
  | 'recycling'
  | 'quarantined'
  | 'stopped';

export const ALL_STATES: readonly AgentState[] = [
  'boot',
  'recovering',
  'preflight',
  'registering',
  'idle',
  'job-running',
  'cleaning',
  'verifying',
  'deciding',
  'draining',
  'recycling',
  'quarantined',
  'stopped',
];

/** The allowed edges. */
const TRANSITIONS: Record<AgentState, readonly AgentState[]> = {
  // boot → quarantined: the quarantine fact survives restarts; the host is never recovered into service.
  boot: ['recovering', 'preflight', 'quarantined', 'stopped'],
  recovering: ['cleaning', 'preflight', 'stopped', 'draining'],
  preflight: ['registering', 'quarantined', 'stopped', 'draining', 'cleaning'],
  registering: ['idle', 'registering', 'cleaning', 'draining', 'stopped', 'quarantined', 'recycling'],
  // idle → cleaning: the listener exited without a job (self-update, crash, ghost): clean before anything else.
  idle: ['job-running', 'idle', 'cleaning', 'registering', 'draining', 'stopped'],
  'job-running': ['cleaning', 'draining'],
  cleaning: ['verifying', 'quarantined', 'stopped'],
  verifying: ['deciding', 'quarantined'],
  deciding: ['registering', 'recycling', 'quarantined', 'stopped', 'idle'],
  draining: ['cleaning', 'recycling', 'stopped'],
  recycling: ['stopped', 'quarantined'],
  // quarantined → recovering: only after an operator's release (`runner-warden unquarantine`).
  quarantined: ['recycling', 'stopped', 'recovering'],
  stopped: [],
};

/** Thrown for an edge the table does not allow: a programming error, never expected at run time. */
export class IllegalTransitionError extends Error {
  override name = 'IllegalTransitionError';
  constructor(
    readonly from: AgentState,
    readonly to: AgentState,
  ) {
    super(`illegal agent state transition ${from} -> ${to}`);
  }
}

/** Throws IllegalTransitionError unless `from → to` is in the table. */
export function assertTransition(from: AgentState, to: AgentState): void {
  if (!TRANSITIONS[from].includes(to)) throw new IllegalTransitionError(from, to);
}

/** States in which a crash leaves the host possibly dirty: the next boot cleans before registering. */
export const DIRTY_STATES: ReadonlySet<AgentState> = new Set(['idle', 'job-running', 'cleaning', 'verifying', 'draining', 'quarantined']);

/** States in which /readyz answers 200. */
export const READY_STATES: ReadonlySet<AgentState> = new Set(['idle', 'job-running']);
