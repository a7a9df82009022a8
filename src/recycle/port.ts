/**
 * The recycle side of the agent's RecyclePort (src/agent/deps.ts): what the agent tells the fleet's
 * engine when a host must be replaced. Behind it sit one RecycleProvider per engine (exit,
 * shutdown, aws-asg, gcp-mig, azure-vmss, kubernetes, webhook, command), each a thin adapter that takes its far-side endpoint or command from config
 * and never acts on this machine by itself; chain.ts tries a provider and its fallbacks in order.
 */

/** Why and for whom a host is recycled; the payload every provider passes on (webhook body, command env). */
export interface RecycleEvent {
  /** The decision's reason, e.g. "max-jobs", "dirty", "disk-low", "drain". */
  reason: string;
  /** This host's name. */
  host: string;
  runnerName?: string;
  runnerId?: number;
  team: string;
  /** Jobs this host served since boot. */
  jobsServed: number;
  lastJob?: { repository?: string; runId?: string; job?: string; result?: string };
  /** ISO 8601 time of the decision; a receiver can reject stale deliveries with it. */
  at: string;
  /** Stable for one recycle of one host, so retries and restarts after a crash are deduplicated. */
  idempotencyKey: string;
}

/** What one provider did. `ok` means the engine accepted the signal, not that the host is gone yet. */
export interface RecycleResult {
  provider: string;
  ok: boolean;
  /** One short human sentence, safe for logs and the journal (no secret). */
  detail: string;
  /** Only for `exit`: the code the agent must exit with. */
  exitCode?: number;
}

/** One recycle engine. `recycle` resolves with a result; it rejects only when `signal` aborts. */
export interface RecycleProvider {
  readonly name: string;
  recycle(event: RecycleEvent, signal: AbortSignal): Promise<RecycleResult>;
}

/** One provider's try, as recorded in the job's journal record. */
export interface RecycleAttempt extends RecycleResult {
  startedAt: string;
  durationMs: number;
}

/** The chain's answer: the accepting provider's result (or the last failure) and every attempt. */
export interface RecycleOutcome extends RecycleResult {
  attempts: RecycleAttempt[];
  /** True when the caller's signal stopped the chain. */
  aborted: boolean;
}

/**
 * The RecycleChain: the configured provider and its fallbacks, built by createRecycler (chain.ts).
 * The composition root (src/cli/recycle-provider.ts) stamps each event with the host's name, time
 * and idempotency key and hands it to the agent as its RecyclePort.
 */
export interface RecycleChain {
  /** Provider names in the order they are tried. */
  readonly providers: readonly string[];
  /** Tries each provider until one says ok. Never rejects. */
  recycle(event: RecycleEvent, signal: AbortSignal): Promise<RecycleOutcome>;
}
