/**
 * Test helpers for the runner simulator: a small stub of the fake GitHub's broker
 * (src/sim/PROTOCOL.md) and a way to run the simulated listener as a real child process as the
 * lab's runner user. The stub exists so the simulator can be tested on its own; integration with
 * the real fake (src/sim/github) lives in its own test file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, chown, readFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { installSimulatedRunner } from '../../../src/sim/runner/install.js';
import type { SimJob } from '../../../src/sim/runner/broker.js';

/** One request the stub saw. */
export interface StubEvent {
  method: string;
  path: string;
  body: unknown;
}

interface Agent {
  id: number;
  name: string;
  clientId: string;
  labels: string[];
  ephemeral: boolean;
  deleted: boolean;
  usedJob: boolean;
  /** Messages handed before any job (update, crash). */
  messages: unknown[];
}

/** The stub broker. */
export interface StubBroker {
  url: string;
  brokerUrl: string;
  events: StubEvent[];
  completions: Array<{ jobId: string; result: string; exitCode: number }>;
  /** Registers a runner and returns its encoded JIT config. */
  jitRunner(opts?: { name?: string; labels?: string[]; ephemeral?: boolean; workFolder?: string }): {
    agentId: number;
    encoded: string;
  };
  enqueueJob(spec?: Partial<SimJob>): SimJob;
  /** Queues a raw message (e.g. {type:'update', version}) for a runner's next poll. */
  pushMessage(agentId: number, message: unknown): void;
  /** Deletes a registration (the next poll gets 404, a new session 404). */
  deleteRunner(agentId: number): void;
  /** Changes the runner's client id on the server: its sessions get 401 invalid_client. */
  forgetClient(agentId: number): void;
  /** Makes the job's renewals answer 404 (server-side cancel). */
  cancelJob(jobId: string): void;
  /** Holds a session open for the runner so the next create gets 409 until released. */
  openConflictingSession(agentId: number): () => void;
  /** Registration tokens the exchange accepts. */
  registrationTokens: Set<string>;
  agentNames(): string[];
  openSessions(): number;
  /** While on, every /_broker/ request has its connection dropped (also the pending long polls). */
  setOutage(on: boolean): void;
  close(): Promise<void>;
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

/** Starts the stub broker on 127.0.0.1:0. */
export async function startStubBroker(): Promise<StubBroker> {
  const events: StubEvent[] = [];
  const completions: StubBroker['completions'] = [];
  const agents = new Map<number, Agent>();
  const sessions = new Map<string, number>();
  const conflicts = new Map<number, number>();
  const jobs: SimJob[] = [];
  const cancelled = new Set<string>();
  const brokerTokens = new Map<string, 'register' | 'remove'>();
  const registrationTokens = new Set<string>();
  let nextId = 1;
  let base = '';
  let outage = false;
  const brokerSockets = new Set<Socket>();
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };

  const files = (a: Agent, workFolder: string, gitHubUrl: string): Record<string, string> => ({
    '.runner': JSON.stringify(
      {
        agentId: a.id,
        agentName: a.name,
        poolId: 1,
        poolName: 'Default',
        serverUrl: `${base}/_broker/`,
        gitHubUrl,
        workFolder,
        ephemeral: a.ephemeral,
        disableUpdate: false,
      },
      null,
      2,
    ),
    '.credentials': JSON.stringify(
      {
        scheme: 'OAuth',
        data: { clientId: a.clientId, authorizationUrl: `${base}/_broker/oauth`, requireFipsCryptography: 'False' },
      },
      null,
      2,
    ),
    '.credentials_rsaparams': JSON.stringify({ d: randomBytes(16).toString('base64'), exponent: 'AQAB' }),
  });
  const newAgent = (name: string, labels: string[], ephemeral: boolean): Agent => {
    const a: Agent = {
      id: nextId++,
      name,
      clientId: randomUUID(),
      labels,
      ephemeral,
      deleted: false,
      usedJob: false,
      messages: [],
    };
    agents.set(a.id, a);
    return a;
  };
  const byClient = (req: http.IncomingMessage): Agent | undefined => {
    const id = req.headers['x-sim-client-id'];
    return [...agents.values()].find((a) => a.clientId === id);
  };

  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/_broker/')) {
      if (outage) {
        req.socket.destroy();
        return;
      }
      brokerSockets.add(req.socket);
      res.on('close', () => brokerSockets.delete(req.socket));
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = text;
      }
      const url = new URL(req.url ?? '/', 'http://x');
      events.push({ method: req.method ?? '', path: url.pathname, body });
      const send = (status: number, obj?: unknown): void => {
        if (res.writableEnded) return;
        res.writeHead(status, obj === undefined ? {} : { 'content-type': 'application/json' });
        res.end(obj === undefined ? undefined : JSON.stringify(obj));
      };
      const p = url.pathname;
      let m: RegExpExecArray | null;
      if (req.method === 'POST' && p === '/_broker/sessions') {
        const a = byClient(req);
        if (!a) return send(401, { code: 'invalid_client' });
        if (a.deleted) return send(404, { code: 'RunnerNotFound' });
        if ((conflicts.get(a.id) ?? 0) > 0 || [...sessions.values()].includes(a.id)) {
          return send(409, { code: 'SessionConflict' });
        }
        const sid = randomUUID();
        sessions.set(sid, a.id);
        return send(201, { sessionId: sid });
      }
      if ((m = /^\/_broker\/sessions\/([^/]+)\/message$/.exec(p)) && req.method === 'GET') {
        const sid = m[1] ?? '';
        const waitMs = Math.min(Number(url.searchParams.get('waitMs') ?? 50_000), 50_000);
        const deadline = Date.now() + waitMs;
        const attempt = (): boolean => {
          const aid = sessions.get(sid);
          const a = aid === undefined ? undefined : agents.get(aid);
          if (!a || a.deleted) {
            send(404, { code: 'RunnerNotFound' });
            return true;
          }
          const msg = a.messages.shift();
          if (msg !== undefined) {
            send(200, msg);
            return true;
          }
          if (!(a.ephemeral && a.usedJob)) {
            const idx = jobs.findIndex((j) => j.labels.every((l) => a.labels.map((x) => x.toLowerCase()).includes(l.toLowerCase())));
            if (idx >= 0) {
              const [job] = jobs.splice(idx, 1);
              a.usedJob = true;
              send(200, { type: 'job', job });
              return true;
            }
          }
          if (Date.now() >= deadline) {
            send(204);
            return true;
          }
          return false;
        };
        if (attempt()) return;
        const timer = setTimeout(
          () => {
            waiters.delete(poll);
            attempt();
          },
          Math.max(0, deadline - Date.now()),
        );
        const poll = (): void => {
          if (attempt()) {
            waiters.delete(poll);
            clearTimeout(timer);
          }
        };
        waiters.add(poll);
        res.on('close', () => {
          waiters.delete(poll);
          clearTimeout(timer);
        });
        return;
      }
      if ((m = /^\/_broker\/sessions\/([^/]+)$/.exec(p)) && req.method === 'DELETE') {
        sessions.delete(m[1] ?? '');
        return send(204);
      }
      if ((m = /^\/_broker\/jobs\/([^/]+)\/renew$/.exec(p)) && req.method === 'POST') {
        return cancelled.has(m[1] ?? '') ? send(404, { code: 'JobNotFound' }) : send(200, {});
      }
      if ((m = /^\/_broker\/jobs\/([^/]+)\/complete$/.exec(p)) && req.method === 'POST') {
        const b = body as { result: string; exitCode: number };
        completions.push({ jobId: m[1] ?? '', result: b.result, exitCode: b.exitCode });
        const a = byClient(req);
        if (a?.ephemeral) a.deleted = true;
        return send(200, {});
      }
      if (req.method === 'POST' && p === '/actions/runner-registration') {
        const auth = String(req.headers.authorization ?? '');
        const tok = auth.replace(/^RemoteAuth /, '');
        if (!registrationTokens.has(tok)) return send(404, { message: 'Not Found' });
        const bt = randomBytes(8).toString('hex');
        brokerTokens.set(bt, (body as { runner_event: 'register' | 'remove' }).runner_event);
        return send(200, { url: `${base}/_broker/`, token_schema: 'OAuthAccessToken', token: bt, use_v2_flow: true });
      }
      if (req.method === 'POST' && p === '/_broker/agents') {
        const bt = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
        if (brokerTokens.get(bt) !== 'register') return send(401, { code: 'unauthorized' });
        const b = body as {
          name: string;
          labels: string[];
          ephemeral: boolean;
          runnerGroup: string | null;
          replace: boolean;
          workFolder: string;
        };
        if (b.runnerGroup !== null && b.runnerGroup !== 'Default') return send(404, { code: 'RunnerGroupNotFound' });
        const existing = [...agents.values()].find((a) => !a.deleted && a.name === b.name);
        if (existing && !b.replace) return send(409, { code: 'AgentExists' });
        if (existing) existing.deleted = true;
        if (existing) wake(); // its pending poll learns at once that the registration is gone
        const a = newAgent(b.name, b.labels, b.ephemeral);
        return send(existing ? 200 : 201, {
          runner: { id: a.id, name: a.name },
          files: files(a, b.workFolder, 'https://github.com/octo/app'),
          replaced: Boolean(existing),
        });
      }
      if ((m = /^\/_broker\/agents\/(\d+)$/.exec(p)) && req.method === 'DELETE') {
        const bt = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
        if (brokerTokens.get(bt) !== 'remove') return send(401, { code: 'unauthorized' });
        const a = agents.get(Number(m[1]));
        if (!a || a.deleted) return send(404, { code: 'RunnerNotFound' });
        a.deleted = true;
        return send(204);
      }
      send(404, { message: 'Not Found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: base,
    brokerUrl: `${base}/_broker/`,
    events,
    completions,
    registrationTokens,
    jitRunner(opts = {}) {
      const a = newAgent(opts.name ?? `sim-${nextId}`, opts.labels ?? ['self-hosted', 'Linux', 'X64'], opts.ephemeral ?? true);
      const f = files(a, opts.workFolder ?? '_work', '');
      const encoded = b64(JSON.stringify(Object.fromEntries(Object.entries(f).map(([k, v]) => [k, b64(v)]))));
      return { agentId: a.id, encoded };
    },
    enqueueJob(spec = {}) {
      const job: SimJob = {
        jobId: randomUUID(),
        requestId: nextId++,
        planId: randomUUID(),
        displayName: 'build',
        repository: 'octo/app',
        workflow: 'CI',
        runId: '123',
        runNumber: '7',
        runAttempt: '1',
        sha: 'a'.repeat(40),
        ref: 'refs/heads/main',
        eventName: 'push',
        actor: 'octocat',
        labels: ['self-hosted'],
        steps: [{ name: 'Build', run: 'echo building' }],
        timeoutMinutes: 360,
        cancelAfterMs: null,
        ...spec,
      };
      jobs.push(job);
      wake();
      return job;
    },
    pushMessage(agentId, message) {
      agents.get(agentId)?.messages.push(message);
      wake();
    },
    deleteRunner(agentId) {
      const a = agents.get(agentId);
      if (a) a.deleted = true;
      wake();
    },
    forgetClient(agentId) {
      const a = agents.get(agentId);
      if (a) a.clientId = randomUUID();
    },
    cancelJob(jobId) {
      cancelled.add(jobId);
    },
    openConflictingSession(agentId) {
      conflicts.set(agentId, (conflicts.get(agentId) ?? 0) + 1);
      return () => conflicts.set(agentId, (conflicts.get(agentId) ?? 1) - 1);
    },
    agentNames: () => [...agents.values()].filter((a) => !a.deleted).map((a) => a.name),
    openSessions: () => sessions.size,
    setOutage(on) {
      outage = on;
      if (on) for (const sock of brokerSockets) sock.destroy();
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A running simulated listener. */
export interface RunnerProc {
  child: ChildProcess;
  /** Everything written so far, per stream. */
  out(): string;
  err(): string;
  /** Resolves when a stdout/stderr line matches, rejects after `ms`. */
  waitFor(re: RegExp, ms?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** A lab with the simulator installed at `<lab.root>/runner`, owned by the lab's runner user. */
export interface RunnerLab {
  lab: Lab;
  root: string;
  /** A directory owned by the runner user, for hooks and steps to leave evidence in. */
  out: string;
  /** A root-owned directory for hook scripts (outside the runner root, as the docs advise). */
  hooks: string;
  broker: StubBroker;
  /** Runs `<at>/<exe>` (default `<root>/bin/Runner.Listener`) as the runner user with a scrubbed env. */
  start(args: string[], env?: Record<string, string>, exe?: string, at?: string): RunnerProc;
  /** Installs another simulated runner (a second "host") at `<lab.root>/<name>`, owned by the runner user. */
  addRoot(name: string): Promise<string>;
  dispose(): Promise<void>;
}

/** Creates a lab user, installs the simulator and starts a stub broker. */
export async function createRunnerLab(): Promise<RunnerLab> {
  const lab = await createLab('rw-sim-runner-');
  const root = path.join(lab.root, 'runner');
  await installSimulatedRunner(root, { owner: { uid: lab.user.uid, gid: lab.user.gid } });
  const out = path.join(lab.root, 'out');
  await mkdir(out, { mode: 0o755 });
  await chown(out, lab.user.uid, lab.user.gid);
  const hooks = path.join(lab.root, 'hooks');
  await mkdir(hooks, { mode: 0o755 });
  const broker = await startStubBroker();
  const procs: ChildProcess[] = [];
  return {
    lab,
    root,
    out,
    hooks,
    broker,
    async addRoot(name) {
      const other = path.join(lab.root, name);
      await installSimulatedRunner(other, { owner: { uid: lab.user.uid, gid: lab.user.gid } });
      return other;
    },
    start(args, env = {}, exe = 'bin/Runner.Listener', at = root) {
      const child = spawn(path.join(at, exe), args, {
        cwd: at,
        uid: lab.user.uid,
        gid: lab.user.gid,
        env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: lab.user.home, USER: lab.user.name, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      procs.push(child);
      let out = '';
      let err = '';
      const listeners = new Set<() => void>();
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString('utf8');
        for (const l of [...listeners]) l();
      });
      child.stderr?.on('data', (d: Buffer) => {
        err += d.toString('utf8');
        for (const l of [...listeners]) l();
      });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.on('close', (code, signal) => resolve({ code, signal })),
      );
      return {
        child,
        out: () => out,
        err: () => err,
        exited,
        waitFor(re, ms = 10_000) {
          return new Promise((resolve, reject) => {
            const check = (): boolean => {
              const line = `${out}\n${err}`.split('\n').find((l) => re.test(l));
              if (line === undefined) return false;
              listeners.delete(onData);
              clearTimeout(timer);
              resolve(line);
              return true;
            };
            const onData = (): void => {
              check();
            };
            const timer = setTimeout(() => {
              listeners.delete(onData);
              reject(new Error(`no line matched ${re} within ${ms} ms\nstdout:\n${out}\nstderr:\n${err}`));
            }, ms);
            if (!check()) listeners.add(onData);
          });
        },
      };
    },
    async dispose() {
      for (const c of procs) {
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }
      await broker.close();
      await lab.dispose();
    },
  };
}

/** The `_diag` files of a runner root whose names start with `prefix`, concatenated. */
export async function readDiag(root: string, prefix: 'Runner' | 'Worker' | 'SelfUpdate'): Promise<string> {
  const { readdir } = await import('node:fs/promises');
  const dir = path.join(root, '_diag');
  const names = (await readdir(dir)).filter((n) => n.startsWith(`${prefix}_`) || n.startsWith(`${prefix}-`)).sort();
  let text = '';
  for (const n of names) text += await readFile(path.join(dir, n), 'utf8');
  return text;
}

/** True when the pid no longer runs (absent, or a zombie nobody reaped yet). */
export function processGone(pid: number): boolean {
  const status = `/proc/${pid}/status`;
  if (!existsSync(status)) return true;
  try {
    return /^State:\s+Z/m.test(readFileSync(status, 'utf8'));
  } catch {
    return true;
  }
}

/** The `_diag` line format of §4.2. */
export const DIAG_LINE = /^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z (INFO|WARN|ERR |VERB|CRIT) [A-Za-z.]+\] .*$/;

/** The console timestamp prefix (`u` format) of §4.2. */
export const TS = '\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}Z';
