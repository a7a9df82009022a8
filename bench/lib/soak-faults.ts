/**
 * The soak's outside faults and watchers: a helper process that fills the state filesystem and
 * frees it, forged hook reports from a second local user, and the /healthz poller.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { UserInfo } from '../../src/lib/users.js';

/** Fills the filesystem of `dir` at once, holds it full for `holdMs`, then frees it; one helper process per episode. */
export class StateFiller {
  private readonly helpers = new Set<ChildProcess>();
  private seq = 0;
  episodes = 0;
  constructor(private readonly dir: string) {}

  fill(holdMs: number): void {
    const file = path.join(this.dir, `.soak-filler-${++this.seq}`);
    const secs = (holdMs / 1000).toFixed(2);
    const child = spawn('bash', ['-c', `dd if=/dev/zero of='${file}' bs=256k 2>/dev/null; sleep ${secs}; rm -f '${file}'`], {
      stdio: 'ignore',
    });
    this.episodes += 1;
    this.helpers.add(child);
    child.once('exit', () => this.helpers.delete(child));
  }

  /** Ends every helper and frees what they held. */
  async stop(): Promise<void> {
    for (const c of this.helpers) c.kill('SIGKILL');
    this.helpers.clear();
    const { readdir, rm } = await import('node:fs/promises');
    for (const n of await readdir(this.dir).catch(() => [] as string[])) {
      if (n.startsWith('.soak-filler-')) await rm(path.join(this.dir, n), { force: true });
    }
  }
}

/** What one forging attempt reached: each path tried, and whether the forger got through. */
export interface ForgeOutcome {
  tries: Record<string, string>;
  /** Any write or connection that succeeded. */
  reached: boolean;
}

/** The repository a forged report names: it must never show up in /status or the journal. */
export const FORGED_REPO = 'evil/spoofed';

/**
 * Runs, as `user` (a second local user, not the runner user), a node script that tries every way
 * a report could reach the agent: the hook socket, the old drop directory, the hook scripts.
 */
export function forgeAs(user: UserInfo, stateDir: string): Promise<ForgeOutcome> {
  const pub = path.join(stateDir, 'public');
  const script = `
const net = require('node:net'); const fs = require('node:fs');
const out = {};
const body = 'event=started\\nGITHUB_REPOSITORY=${FORGED_REPO}\\nGITHUB_ACTOR=mallory\\nGITHUB_RUN_ID=666\\n';
for (const [k, f] of [['drop-dir', ${JSON.stringify(path.join(pub, 'events', 'job-started.1.evt'))}], ['hook-script', ${JSON.stringify(path.join(pub, 'hooks', 'job-started.sh'))}], ['report-dir', ${JSON.stringify(path.join(pub, 'report', 'forged.evt'))}], ['state-dir', ${JSON.stringify(path.join(stateDir, 'forged.evt'))}]]) {
  try { fs.appendFileSync(f, body); out[k] = 'WROTE'; } catch (e) { out[k] = e.code || String(e); }
}
const s = net.connect(${JSON.stringify(path.join(pub, 'report', 'hook.sock'))});
const t = setTimeout(() => { out.socket = out.socket || 'timeout'; s.destroy(); }, 3000);
s.on('connect', () => { out.socket = 'CONNECTED'; s.end(body); });
s.on('error', (e) => { out.socket = out.socket || e.code || String(e); });
s.on('close', () => { clearTimeout(t); process.stdout.write(JSON.stringify(out)); });
`;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['-e', script],
      { uid: user.uid, gid: user.gid, cwd: '/', env: { PATH: '/usr/bin:/bin', HOME: user.home }, timeout: 10_000 },
      (err, stdout) => {
        let tries: Record<string, string> = {};
        try {
          tries = JSON.parse(stdout) as Record<string, string>;
        } catch {
          tries = { forger: `failed: ${err?.message ?? stdout}` };
        }
        resolve({ tries, reached: Object.values(tries).some((v) => v === 'WROTE' || v === 'CONNECTED') });
      },
    );
  });
}

/** One /healthz answer the soak did not accept. */
export interface HealthFailure {
  at: string;
  what: string;
  /** The agent process had not reached its first state yet (its loop had not started). */
  startup: boolean;
}

/** Whether the agent process should be answering now (started its health server, not stopping or killed). */
export type ServingProbe = () => boolean;

/**
 * Polls `/healthz` every `everyMs`: 200 is fine, so is 503 `unhealthy: quarantined`; any other
 * answer is a failure, and so is no answer while `serving()` held before and after the request.
 */
export class HealthPoller {
  readonly failures: HealthFailure[] = [];
  polls = 0;
  answers: Record<string, number> = {};
  private timer?: NodeJS.Timeout;
  private running = false;
  private inFlight?: Promise<void>;

  constructor(
    private readonly url: string,
    private readonly serving: ServingProbe,
    private readonly everyMs: number,
    /** How long one answer may take on a loaded machine before it counts as none. */
    private readonly answerMs: number,
    private readonly onTick?: () => void,
    /** What the agent was doing, kept with a failure. */
    private readonly context: () => string = () => '',
    /** Whether the agent process is still starting (no state reached yet). */
    private readonly startingUp: () => boolean = () => false,
  ) {}

  start(): void {
    this.running = true;
    const tick = (): void => {
      if (!this.running) return;
      this.inFlight = this.pollOnce().finally(() => {
        this.onTick?.();
        if (this.running) this.timer = setTimeout(tick, this.everyMs);
      });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await this.inFlight;
  }

  private async pollOnce(): Promise<void> {
    const before = this.serving();
    const at = new Date().toISOString();
    let what: string;
    try {
      const res = await fetch(this.url, { signal: AbortSignal.timeout(this.answerMs) });
      const body = (await res.text()).trim();
      what = `${res.status} ${body}`;
      this.polls += 1;
      const key = res.status === 200 ? '200' : `${res.status} ${body.slice(0, 40)}`;
      this.answers[key] = (this.answers[key] ?? 0) + 1;
      if (res.status === 200 || (res.status === 503 && body.includes('quarantined'))) return;
      this.failures.push({ at, what: `${what} (${this.context()})`, startup: this.startingUp() });
      return;
    } catch (err) {
      what = `no answer: ${(err as Error).cause ? String((err as Error & { cause: unknown }).cause) : (err as Error).message}`;
    }
    this.polls += 1;
    if (before && this.serving()) {
      this.failures.push({ at, what: `${what} (${this.context()})`, startup: this.startingUp() });
      this.answers['no answer while serving'] = (this.answers['no answer while serving'] ?? 0) + 1;
    } else {
      this.answers['no answer (agent starting/stopping/down)'] = (this.answers['no answer (agent starting/stopping/down)'] ?? 0) + 1;
    }
  }
}
