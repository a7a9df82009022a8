/**
 * Engine API calls the agent makes on a job's engine (warm pulls, the list of its images),
 * made AS the runner user: `setpriv` drops to the runner user with no groups, and curl talks to
 * the engine's socket. The engine's directory is the runner user's, so a job can replace its
 * socket with a symlink to another socket or with a server of its own; a call made by root would
 * then reach whatever the job pointed it at (a confused deputy). Made as the runner user, it
 * reaches only what the job could reach itself, and its answer is treated as hostile input
 * (bounded in time and size, parsed by the caller).
 */
import { runCommand } from '../lib/process.js';

/** What one call needs; `path` is the API path with its query (`/images/json`). */
export interface EngineCall {
  socket: string;
  user: { uid: number; gid: number };
  method: 'GET' | 'POST';
  path: string;
  timeoutMs: number;
  /** Bytes of the answer kept from its END (a pull's progress stream ends with its outcome). */
  tailBytes: number;
  signal?: AbortSignal;
  /** The engine's cgroup: the call runs in it, so the engine's teardown kills whatever of it is left. */
  cgroup?: string;
}

/** The answer: the HTTP status (0 when there was none) and the body's kept bytes. */
export interface EngineAnswer {
  status: number;
  body: string;
  error?: string;
}

/**
 * curl with no configuration file (`-q`, first), the status appended on a line of its own, and
 * only the answer's last bytes kept (`tail -c`): a pull's progress lines are thrown away as they come.
 */
const SCRIPT = 'curl -q -sS --max-time "$4" --unix-socket "$1" -X "$2" -w "\\n%{http_code}" "$3" | tail -c "$5"';

/** Runs one Engine API call as the runner user. Never throws. */
export async function engineCallAsUser(c: EngineCall): Promise<EngineAnswer> {
  const seconds = String(Math.max(1, Math.ceil(c.timeoutMs / 1000)));
  const drop = ['setpriv', '--reuid', String(c.user.uid), '--regid', String(c.user.gid), '--clear-groups', '--', '/bin/sh', '-c', SCRIPT];
  drop.push('engine-call', c.socket, c.method, `http://engine${c.path}`, seconds, String(c.tailBytes + 16));
  // Joins the engine's cgroup (as root, before dropping) as the engine's own start does.
  const [cmd, args] =
    c.cgroup === undefined
      ? ['setpriv', drop.slice(1)]
      : ['/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', c.cgroup, ...drop]];
  try {
    const r = await runCommand(cmd, args, {
      timeoutMs: c.timeoutMs + 2_000,
      maxOutputBytes: c.tailBytes + 64,
      cwd: '/',
      env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', LANG: 'C.UTF-8' },
      ...(c.signal ? { signal: c.signal } : {}),
    });
    const nl = r.stdout.lastIndexOf('\n');
    const status = Number(r.stdout.slice(nl + 1).trim());
    const body = nl >= 0 ? r.stdout.slice(0, nl) : '';
    if (r.timedOut) return { status: 0, body, error: `no answer within ${c.timeoutMs} ms` };
    if (!Number.isInteger(status) || status === 0) return { status: 0, body, error: r.stderr.trim().slice(0, 300) || 'no answer' };
    return { status, body };
  } catch (err) {
    return { status: 0, body: '', error: err instanceof Error ? err.message : String(err) };
  }
}
