/**
 * Cold start and idle memory of the installed bundle (the release tarball unpacked in a clean
 * directory, as a host runs it), against the runner simulator and the fake GitHub API:
 *
 *   node --import tsx bench/cold-start.ts [--runs N] [--node PATH] [--node-options FLAGS] [--node-args FLAGS]
 *     [--env K=V,...] [--integrity scoped|off] [--tls] [--late MS] [--dump DIR] [--set 'LABEL;KEY=VALUE;...' ...]
 *
 * `--set` (repeatable) compares settings in the same run: each names a label and what it changes
 * from the options above (tarball=PATH of another release tarball, node=PATH, node-options=FLAGS,
 * node-args=FLAGS, env=K=V,K=V); runs alternate between the settings (the order rotating each
 * round) and every figure is printed per setting with its ratio to the first. Without `--set`,
 * one setting: the tree's build with the options above. `--tls`: the fake API answers over HTTPS
 * with a certificate from a throwaway CA, which the agent trusts as an extra CA beside Node's own
 * roots (NODE_EXTRA_CA_CERTS), so the idle agent holds what it holds against github.com: a TLS
 * client context with the root store, and a kept-alive TLS connection.
 *
 * - bundle size (dist/*.mjs), and what `run` loads (runner-warden.mjs) vs the lazy files;
 * - start → first listener poll: from spawning `runner-warden run` to the listener's session on the
 *   fake API (its long-poll for a job follows at once), median and max of N runs;
 * - idle RSS and PSS, split as bench/lifecycle.ts prints it (anonymous = the agent's own heap and
 *   stacks, shared file-backed = node's binary and libraries), median and max of N runs, beside a
 *   bare `node -e` process measured the same way in the same run;
 * - with `--late MS`, the agent's memory again MS after the listener's session: V8 collects the
 *   old generation of an idle process by itself (its memory reducer, about 8 s after the heap
 *   last grew), so the figure 3 s after the session is start-up's, with its garbage;
 * - the cost of one systemd-notify run (the watchdog ping).
 * Needs root (a throwaway runner user, like the tests). Targets: start ≤ 1.0 s, RSS ≤ 60 MiB,
 * PSS ≤ 40 MiB.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { release } from '../scripts/release.js';
import { startFakeGitHub, type FakeGitHub } from '../src/sim/github/server.js';
import { installSimulatedRunner } from '../src/sim/runner/install.js';
import { lookupUser } from '../src/lib/users.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : def;
};
const RUNS = Number(opt('runs', '6'));
const NODE = opt('node', process.execPath);
/** Where the first run's log goes (info level), to see what start-up spends its time on. */
const LOG = opt('log', '');
/**
 * A directory for the first run's agent: its smaps, and a heap snapshot taken after the memory is
 * measured (the agent then starts with --heapsnapshot-signal=SIGUSR2 and runs in that directory).
 */
const DUMP = opt('dump', '');
/** V8/Node flags for the agent and the bare process alike (e.g. "--max-semi-space-size=1"). */
const NODE_OPTIONS = opt('node-options', '');
/**
 * Node/V8 flags on the command line of the agent and the bare process alike, for those NODE_OPTIONS
 * refuses (--max-opt, --lite-mode, --single-threaded...): what a launcher or a #! line would pass.
 */
const NODE_ARGS = opt('node-args', '').split(' ').filter(Boolean);
/** K=V,K=V as an environment; `what` names the option for the error. */
const parseEnv = (text: string, what: string): Record<string, string> =>
  Object.fromEntries(
    text
      .split(',')
      .filter(Boolean)
      .map((kv) => {
        const i = kv.indexOf('=');
        if (i <= 0) throw new Error(`${what}: expected K=V[,K=V...], got "${kv}"`);
        return [kv.slice(0, i), kv.slice(i + 1)];
      }),
  );
/** Environment for the agent and the bare process alike (e.g. "MALLOC_ARENA_MAX=2", as a unit's Environment= would set it). */
const EXTRA_ENV = parseEnv(opt('env', ''), '--env');

/** One setting measured: a build (tarball; undefined = the tree's, built by the bench) and how Node runs it. */
interface Setting {
  label: string;
  tarball?: string;
  node: string;
  nodeOptions: string;
  nodeArgs: string[];
  env: Record<string, string>;
}

/** The settings of `--set LABEL;key=value;...` (repeatable), each starting from the options above. */
function parseSettings(): Setting[] {
  const base: Setting = { label: 'current', node: NODE, nodeOptions: NODE_OPTIONS, nodeArgs: NODE_ARGS, env: EXTRA_ENV };
  const specs = args.flatMap((a, i) => (a === '--set' && args[i + 1] !== undefined ? [args[i + 1] as string] : []));
  if (specs.length === 0) return [base];
  return specs.map((spec) => {
    const [label = '', ...kvs] = spec.split(';');
    if (!label || label.includes('=')) throw new Error(`--set: expected "LABEL;key=value;...", got "${spec}"`);
    const s: Setting = { ...base, label, env: { ...base.env } };
    for (const kv of kvs) {
      const i = kv.indexOf('=');
      const [k, v] = [kv.slice(0, i), kv.slice(i + 1)];
      if (k === 'tarball') s.tarball = path.resolve(v);
      else if (k === 'node') s.node = v;
      else if (k === 'node-options') s.nodeOptions = v;
      else if (k === 'node-args') s.nodeArgs = v.split(' ').filter(Boolean);
      else if (k === 'env') Object.assign(s.env, parseEnv(v, `--set ${label} env`));
      else throw new Error(`--set ${label}: expected tarball=, node=, node-options=, node-args= or env=, got "${kv}"`);
    }
    return s;
  });
}
const SETTINGS = parseSettings();
/**
 * `scoped` (default): the whole-host integrity check on, on the surfaces nothing else on a shared
 * machine changes; `off`: without it, to see the rest of the start-up path (its cost is the
 * integrity feature's and is printed as its own phase either way).
 */
const INTEGRITY = opt('integrity', 'scoped');
/** The fake API over HTTPS (see the header). */
const TLS = args.includes('--tls');
if (!['scoped', 'off'].includes(INTEGRITY)) throw new Error(`--integrity: expected scoped or off, got "${INTEGRITY}"`);
/** The preflight's whole-host integrity compare takes tens of seconds on a loaded two-core machine. */
const SESSION_TIMEOUT_MS = 600_000;
/** After the agent reports idle: let lazy timers settle. */
const SETTLE_MS = 3_000;
/**
 * When to measure the agent a second time after the listener's session (0: not at all). V8's
 * memory reducer starts a major collection about 8 s after an idle heap last grew; 30 s is past it.
 */
const LATE_MS = Number(opt('late', '0'));
if (!Number.isFinite(LATE_MS) || (LATE_MS !== 0 && LATE_MS <= SETTLE_MS))
  throw new Error(`--late: expected 0 or more than ${SETTLE_MS} ms, got "${opt('late', '0')}"`);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Mem {
  rss: number;
  pss: number;
  anon: number;
  shared: number;
  /** RSS of the mappings of the node binary, of malloc's main arena ([heap]) and of unnamed anonymous mappings (V8's heap, thread arenas and stacks). */
  binary: number;
  brk: number;
  mmap: number;
}

async function memOf(pid: number): Promise<Mem> {
  const smaps = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kib = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(smaps)?.[1] ?? NaN) / 1024;
  const exe = await readlink(`/proc/${pid}/exe`).catch(() => '');
  let binary = 0;
  let brk = 0;
  let mmap = 0;
  let name = '';
  for (const line of (await readFile(`/proc/${pid}/smaps`, 'utf8')).split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      name = head[1] ?? '';
      continue;
    }
    const rss = /^Rss:\s+(\d+)/.exec(line);
    if (!rss) continue;
    const mib = Number(rss[1]) / 1024;
    if (name === exe) binary += mib;
    else if (name === '[heap]') brk += mib;
    else if (name === '') mmap += mib;
  }
  return { rss: kib('Rss'), pss: kib('Pss'), anon: kib('Anonymous'), shared: kib('Shared_Clean'), binary, brk, mmap };
}

/** Where a file offset of the node binary falls: its ELF sections, and the ICU data blob inside .rodata. */
interface BinaryLayout {
  sections: { name: string; off: number; size: number }[];
  icu?: { off: number; size: number };
}

/** The node binary's sections and ICU data (readelf, binutils); undefined where readelf is missing. */
function binaryLayout(exe: string): BinaryLayout | undefined {
  const sections: (BinaryLayout['sections'][number] & { addr: number })[] = [];
  let text: string;
  try {
    text = execFileSync('readelf', ['-SW', exe], { encoding: 'utf8', maxBuffer: 64 << 20 });
  } catch {
    return undefined;
  }
  for (const l of text.split('\n')) {
    const m = /\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)/.exec(l);
    if (m)
      sections.push({
        name: m[1] as string,
        addr: parseInt(m[2] as string, 16),
        off: parseInt(m[3] as string, 16),
        size: parseInt(m[4] as string, 16),
      });
  }
  // Node embeds ICU's data (about 32 MiB) as one symbol: icudt<version>_dat.
  const syms = execFileSync('readelf', ['-sW', exe], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const m = /:\s+([0-9a-f]+)\s+(\d+|0x[0-9a-f]+)\s+OBJECT\s.*\sicudt\d+_dat\s*$/m.exec(syms);
  let icu: BinaryLayout['icu'];
  if (m) {
    const addr = parseInt(m[1] as string, 16);
    const sec = sections.find((x) => addr >= x.addr && addr < x.addr + x.size);
    if (sec) icu = { off: sec.off + (addr - sec.addr), size: Number(m[2]) };
  }
  return { sections, icu };
}

/**
 * The node binary's resident pages by what they hold (MiB): code (.text), read-only data
 * (.rodata, less ICU's), ICU's data, the dynamic symbol tables, the rest. Read from the page
 * tables (/proc/PID/pagemap, root only): which pages of the file this process has mapped in.
 */
async function binaryPages(pid: number, layout: BinaryLayout): Promise<Record<string, number>> {
  const exe = await readlink(`/proc/${pid}/exe`);
  const out: Record<string, number> = {};
  const fh = await open(`/proc/${pid}/pagemap`, 'r');
  try {
    for (const line of (await readFile(`/proc/${pid}/maps`, 'utf8')).split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \S+\s+(.*)$/.exec(line);
      if (!m || m[4] !== exe) continue;
      const start = parseInt(m[1] as string, 16);
      const pages = (parseInt(m[2] as string, 16) - start) / 4096;
      const buf = Buffer.alloc(pages * 8);
      await fh.read(buf, 0, buf.length, (start / 4096) * 8);
      for (let i = 0; i < pages; i++) {
        if (!(buf.readBigUInt64LE(i * 8) >> 63n)) continue;
        const off = parseInt(m[3] as string, 16) + i * 4096;
        const { icu } = layout;
        const sec = layout.sections.find((x) => x.size > 0 && off >= x.off && off < x.off + x.size)?.name ?? '';
        const key =
          icu && off >= icu.off && off < icu.off + icu.size
            ? 'ICU data'
            : sec === '.text'
              ? 'code'
              : sec === '.rodata'
                ? 'rodata'
                : sec === '.dynsym' || sec === '.dynstr' || sec === '.gnu.hash'
                  ? 'symbols'
                  : 'other';
        out[key] = (out[key] ?? 0) + 4096 / 1048576;
      }
    }
  } finally {
    await fh.close();
  }
  return out;
}

/** Start-up phases, in ms, each measured from the end of the previous one (undefined: not logged). */
type Phases = Partial<Record<(typeof PHASE_LABELS)[number][0], number>>;

/** The marks the agent logs on its way to the first poll, in order, and what each phase covers. */
const PHASE_LABELS = [
  ['wiring', 'spawn → wiring starts (node, bundle load, config, locks)'],
  ['slot', 'slot, runner install manifest and home baseline checked'],
  ['policy', 'policy loaded'],
  ['guards', 'job guards built (engine, sudo, integrity)'],
  ['wired', 'GitHub adapter, cgroups, journal: agent built'],
  ['health', 'health server listening'],
  ['preflight', '→ preflight (control socket, state, recovery)'],
  ['cleaning', 'preflight checks (engine wait) → cleaning'],
  ['cleaned', 'boot cleanup pipeline (steps)'],
  ['verified', 'verification incl. job guards (whole-host integrity)'],
  ['registered', 'decide + JIT registration on the fake API'],
  ['listener', 'listener spawned'],
  ['session', 'listener start → its session on the fake API'],
] as const;

/** Reads the phase marks from one run's JSON log (pino, ISO times); `wall0` = spawn, `session` = the fake's event. */
function phasesOf(log: string, wall0: number, session: number): Phases {
  const marks: Partial<Record<string, number>> = {};
  for (const line of log.split('\n')) {
    let j: { time?: string; msg?: string; from?: string; to?: string };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue;
    }
    const t = Date.parse(j.time ?? '');
    const key =
      j.msg === 'wiring'
        ? 'wiring'
        : j.msg === 'slot checked'
          ? 'slot'
          : j.msg === 'policy loaded'
            ? 'policy'
            : j.msg === 'guards built'
              ? 'guards'
              : j.msg === 'agent built'
                ? 'wired'
                : j.msg === 'health server listening'
                  ? 'health'
                  : j.msg === 'state' && j.to === 'preflight'
                    ? 'preflight'
                    : j.msg === 'state' && j.from === 'preflight'
                      ? 'cleaning'
                      : j.msg === 'state' && j.from === 'cleaning'
                        ? 'cleaned'
                        : j.msg === 'state' && j.from === 'verifying'
                          ? 'verified'
                          : j.msg === 'runner registered'
                            ? 'registered'
                            : j.msg === 'listener started'
                              ? 'listener'
                              : undefined;
    if (key && marks[key] === undefined && Number.isFinite(t)) marks[key] = t;
  }
  marks.session = session;
  const out: Phases = {};
  let prev = wall0;
  for (const [key] of PHASE_LABELS) {
    const t = marks[key];
    if (t === undefined) continue;
    out[key] = t - prev;
    prev = t;
  }
  return out;
}

/** A throwaway CA and a certificate for 127.0.0.1 that it signed (openssl), in `dir`: the CA's file, the key and the certificate. */
async function makeCerts(dir: string): Promise<{ caFile: string; key: string; cert: string }> {
  const f = (name: string): string => path.join(dir, name);
  const ssl = (...a: string[]): void => void execFileSync('openssl', a, { stdio: 'ignore' });
  // P-256, as github.com's own certificate.
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=runner-warden bench CA');
  ssl('req', ...ec, '-keyout', f('api.key'), '-out', f('api.csr'), '-subj', '/CN=127.0.0.1');
  await writeFile(f('api.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  const sign = ['-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('api.ext')];
  ssl('x509', '-req', '-in', f('api.csr'), ...sign, '-out', f('api.pem'));
  return { caFile: f('ca.pem'), key: await readFile(f('api.key'), 'utf8'), cert: await readFile(f('api.pem'), 'utf8') };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(t);
}

/** A host for the agent: runner user, simulated runner, policies, config; removed by dispose. */
async function makeHost(
  lab: string,
  fake: FakeGitHub,
  caFile: string | undefined,
): Promise<{ configFile: string; stateDir: string; user: string; dispose(): void }> {
  const name = `rwb${process.pid % 100000}`;
  const home = path.join(lab, 'home', name);
  await mkdir(path.join(lab, 'home'), { recursive: true, mode: 0o755 });
  execFileSync('useradd', ['-m', '-d', home, '-s', '/bin/bash', '-K', 'MAIL_DIR=/nonexistent', name], { stdio: 'ignore' });
  const u = await lookupUser(name);
  if (!u) throw new Error(`useradd did not create ${name}`);
  await chown(home, u.uid, u.gid);
  const runnerRoot = path.join(lab, 'actions-runner');
  await installSimulatedRunner(runnerRoot, { owner: { uid: u.uid, gid: u.gid } });
  const etc = path.join(lab, 'etc');
  await mkdir(path.join(etc, 'policies'), { recursive: true, mode: 0o700 });
  for (const d of ['tmp', 'var-tmp', 'shm']) {
    await mkdir(path.join(lab, 'sys', d), { recursive: true });
    await chmod(path.join(lab, 'sys', d), 0o1777);
  }
  await writeFile(
    path.join(etc, 'policies', 'bench.yaml'),
    [
      'version: 1',
      'cleanup:',
      `  temp: { paths: [${['tmp', 'var-tmp', 'shm'].map((d) => path.join(lab, 'sys', d)).join(', ')}] }`,
      `  containers: { socket: ${path.join(lab, 'no-docker.sock')} }`,
      // No container engine on a bench host: no per-job engine to prepare.
      'docker: { mode: none }',
      // The whole-host integrity check stays on, scoped as the demo scopes it: on a shared machine
      // other processes add users, mounts and /tmp files the bench did not cause (drift would
      // quarantine the host and no listener would ever poll).
      'host:',
      '  integrity:',
      ...(INTEGRITY === 'off'
        ? ['    enabled: false']
        : [
            '    surfaces: [usr-local, opt-srv, root-home, authorized-keys, cron, systemd, modules, sysctl]',
            '    exceptions: ["/root/.npm/**"]',
          ]),
      '',
    ].join('\n'),
  );
  await writeFile(path.join(etc, 'token'), `${fake.defaultToken}\n`, { mode: 0o600 });
  const stateDir = path.join(lab, 'state');
  const configFile = path.join(etc, 'config.yaml');
  await writeFile(
    configFile,
    [
      'github:',
      `  url: ${fake.origin}`,
      `  apiUrl: ${fake.url}`,
      '  org: octo',
      `  token: { file: ${path.join(etc, 'token')} }`,
      'runner:',
      `  root: ${runnerRoot}`,
      `  user: ${name}`,
      '  name: "bench-{seq}"',
      '  labels: [self-hosted]',
      // The simulated listener talks to the fake's broker: it trusts the bench's CA too.
      ...(caFile ? [`  env: { NODE_EXTRA_CA_CERTS: ${caFile} }`] : []),
      'team: bench',
      `policyDir: ${path.join(etc, 'policies')}`,
      `stateDir: ${stateDir}`,
      'health: { listen: "127.0.0.1:0" }',
      'recycle: { provider: none }',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return {
    configFile,
    stateDir,
    user: name,
    dispose() {
      try {
        execFileSync('pkill', ['-KILL', '-U', name], { stdio: 'ignore' });
      } catch {
        // nothing left running
      }
      execFileSync('userdel', ['-f', name], { stdio: 'ignore' });
    },
  };
}

/** Built-in modules worth naming when an idle agent has loaded them (each costs its source's pages and heap). */
const HEAVY_BUILTINS = ['undici', 'tls', 'crypto', 'zlib', 'http2', 'worker_threads', 'inspector', 'vm', 'wasm'];

/**
 * A preload for one extra run per setting (not measured): on SIGWINCH, which the agent does not
 * use, it writes to the file named in its env the built-in modules the process has loaded and
 * V8's heap spaces (used and resident bytes; node:v8 is loaded after the list is taken).
 */
const PROBE = `const fs = require('fs');
process.on('SIGWINCH', () => {
  const modules = process.moduleLoadList.slice();
  const spaces = require('v8').getHeapSpaceStatistics().map((x) => [x.space_name, x.space_used_size, x.physical_space_size]);
  fs.writeFileSync(process.env.RWB_PROBE_OUT, JSON.stringify({ modules, spaces }));
});
`;

/** What the probe read in one process: built-in modules loaded, and V8's heap spaces as [name, used, resident] bytes. */
interface Probed {
  modules: string[];
  spaces: [string, number, number][];
}

/** What one setting measured. */
interface Measured {
  s: Setting;
  bin: string;
  dist: string;
  env: NodeJS.ProcessEnv;
  nodeStartMs: number[];
  bundleLoadMs: number[];
  startMs: number[];
  phases: Phases[];
  agentMem: Mem[];
  /** The agent's memory LATE_MS after the session (empty without --late). */
  lateMem: Mem[];
  bareMem: Mem[];
  layout: BinaryLayout | undefined;
  agentPages: Record<string, number>[];
  barePages: Record<string, number>[];
  probe?: Probed;
  bareProbe?: Probed;
}

async function main(): Promise<void> {
  const lab = await mkdtemp(path.join(os.tmpdir(), 'rw-bench-cold-'));
  await chmod(lab, 0o755);
  const certs = TLS ? await makeCerts(lab) : undefined;
  const fake = await startFakeGitHub({ sessionStaleMs: 2_000, ...(certs ? { tls: { key: certs.key, cert: certs.cert } } : {}) });
  let host: Awaited<ReturnType<typeof makeHost>> | undefined;
  try {
    // The installed bundle: the release tarball unpacked into a clean directory (one per setting).
    const built = SETTINGS.some((s) => !s.tarball) ? (await release(path.join(lab, 'release'), { deb: false })).tarball : '';
    host = await makeHost(lab, fake, certs?.caFile);
    const sets: Measured[] = [];
    for (const [n, s] of SETTINGS.entries()) {
      const tarball = s.tarball ?? built;
      const inst = path.join(lab, `installed-${n}`);
      await mkdir(inst);
      execFileSync('tar', ['-xzf', tarball, '-C', inst, '--strip-components=1']);
      const dist = path.join(inst, 'dist');
      let total = 0;
      const sizes: string[] = [];
      for (const f of (await readdir(dist)).filter((f) => f.endsWith('.mjs')).sort()) {
        const b = (await stat(path.join(dist, f))).size;
        total += b;
        sizes.push(`${f} ${(b / 1024).toFixed(0)} KiB`);
      }
      console.log(
        `[${s.label}] ${path.basename(tarball)}${s.tarball ? ` (${s.tarball})` : ' (built from the tree)'}; node ${execFileSync(s.node, ['--version'], { encoding: 'utf8' }).trim()} (${s.node}); NODE_OPTIONS "${s.nodeOptions}"; args "${s.nodeArgs.join(' ')}"; env ${JSON.stringify(s.env)}`,
      );
      console.log(
        `  bundle ${(total / 1024 / 1024).toFixed(2)} MiB of JavaScript: ${sizes.join(', ')}; tarball ${((await stat(tarball)).size / 1024 / 1024).toFixed(2)} MiB`,
      );
      const bin = path.join(inst, 'bin/runner-warden.js');
      const env = {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        RUNNER_WARDEN_LOG_LEVEL: 'warn',
        ...(s.nodeOptions ? { NODE_OPTIONS: s.nodeOptions } : {}),
        // What a host adds to Node's own roots; only a TLS client reads it (the bare process never does).
        ...(certs ? { NODE_EXTRA_CA_CERTS: certs.caFile } : {}),
        ...s.env,
      };
      // The home and install baselines, once: every setting runs the same runner install.
      if (n === 0) execFileSync(s.node, [bin, 'baseline', '--config', host.configFile], { stdio: 'ignore', env });
      sets.push({
        s,
        bin,
        dist,
        env,
        nodeStartMs: [],
        bundleLoadMs: [],
        startMs: [],
        phases: [],
        agentMem: [],
        lateMem: [],
        bareMem: [],
        layout: binaryLayout(s.node),
        agentPages: [],
        barePages: [],
      });
    }
    console.log(`  fake API: ${fake.url}${certs ? ' (HTTPS; the agent trusts its CA through NODE_EXTRA_CA_CERTS)' : ' (plain HTTP)'}`);
    console.log(`  \`run\` loads runner-warden.mjs only; the demo and the AWS SDK files are imported on use`);
    console.log(
      `[load average] ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')} at the start (1, 5, 15 min)`,
    );
    const { configFile, stateDir } = host;

    // Node's own start and the bundle's load, apart from the agent: `node -e 0` and an import of
    // the bundle that runs nothing (main.ts runs only as the entry point).
    for (let i = 0; i < RUNS; i++) {
      for (const m of sets) {
        const bundleUrl = new URL(`file://${path.join(m.dist, 'runner-warden.mjs')}`).href;
        let t = performance.now();
        execFileSync(m.s.node, [...m.s.nodeArgs, '-e', '0'], { env: m.env });
        m.nodeStartMs.push(performance.now() - t);
        t = performance.now();
        execFileSync(m.s.node, [...m.s.nodeArgs, '--input-type=module', '-e', `await import(${JSON.stringify(bundleUrl)})`], {
          env: m.env,
        });
        m.bundleLoadMs.push(performance.now() - t);
      }
    }

    if (DUMP) await mkdir(DUMP, { recursive: true });
    /** One start of the agent to its listener's session; `measure` false: the built-ins probe run. */
    const runOnce = async (m: Measured, i: number, measure: boolean): Promise<void> => {
      const session = new Promise<number>((resolve) => fake.events.once('session-created', () => resolve(Date.now())));
      const probeOut = path.join(lab, `probe-${sets.indexOf(m)}.txt`);
      const probeFile = path.join(lab, 'probe.cjs');
      if (!measure) await writeFile(probeFile, PROBE);
      const t0 = performance.now();
      const wall0 = Date.now();
      // Every run logs at debug level to its own file: the breakdown is read from its timestamps.
      const logFile = LOG && i === 0 && m === sets[0] && measure ? LOG : path.join(lab, `run-${sets.indexOf(m)}-${i + 1}.log`);
      const logFd = (await import('node:fs')).openSync(logFile, 'w');
      const dumpThis = DUMP !== '' && i === 0 && m === sets[0] && measure;
      const agent = spawn(
        m.s.node,
        [...m.s.nodeArgs, ...(dumpThis ? ['--heapsnapshot-signal=SIGUSR2'] : []), m.bin, 'run', '--config', configFile],
        {
          stdio: ['ignore', logFd, 'inherit'],
          ...(dumpThis ? { cwd: DUMP } : {}),
          env: {
            ...m.env,
            RUNNER_WARDEN_LOG_LEVEL: 'debug',
            ...(measure ? {} : { NODE_OPTIONS: `${m.s.nodeOptions} --require ${probeFile}`.trim(), RWB_PROBE_OUT: probeOut }),
          },
        },
      );
      // Cleared once the session comes: a pending 10-minute timer held the finished bench that long.
      let timer: NodeJS.Timeout | undefined;
      const to = new Promise<number>((r) => (timer = setTimeout(() => r(-1), SESSION_TIMEOUT_MS)));
      const at = await Promise.race([session, to]);
      clearTimeout(timer);
      if (at < 0) await stopChild(agent);
      if (at < 0) throw new Error(`${m.s.label} run ${i + 1}: no listener session within ${SESSION_TIMEOUT_MS / 1000} s (log: ${logFile})`);
      if (measure) m.startMs.push(performance.now() - t0);
      await sleep(SETTLE_MS);
      if (!measure) {
        const loaded = async (pid: number): Promise<Probed> => {
          await rm(probeOut, { force: true });
          process.kill(pid, 'SIGWINCH');
          await sleep(500);
          const p = JSON.parse(await readFile(probeOut, 'utf8').catch(() => '{"modules":[],"spaces":[]}')) as Probed;
          return { ...p, modules: p.modules.filter((l) => l.startsWith('NativeModule ')) };
        };
        m.probe = await loaded(agent.pid as number);
        const bare = spawn(m.s.node, [...m.s.nodeArgs, '-e', 'setInterval(() => {}, 1000)'], {
          stdio: 'ignore',
          env: { ...m.env, NODE_OPTIONS: `${m.s.nodeOptions} --require ${probeFile}`.trim(), RWB_PROBE_OUT: probeOut },
        });
        await sleep(SETTLE_MS);
        m.bareProbe = await loaded(bare.pid as number);
        await stopChild(bare);
      } else {
        m.agentMem.push(await memOf(agent.pid as number));
        if (m.layout) m.agentPages.push(await binaryPages(agent.pid as number, m.layout));
        if (LATE_MS > 0) {
          await sleep(LATE_MS - SETTLE_MS);
          m.lateMem.push(await memOf(agent.pid as number));
        }
        if (dumpThis) {
          await writeFile(path.join(DUMP, 'agent.smaps'), await readFile(`/proc/${agent.pid}/smaps`));
          agent.kill('SIGUSR2');
          await sleep(SETTLE_MS * 3);
        }
        m.phases.push(phasesOf(await readFile(logFile, 'utf8'), wall0, at));
        // The baseline: a bare node process, idle, in the same run.
        const bare = spawn(m.s.node, [...m.s.nodeArgs, '-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', env: m.env });
        await sleep(SETTLE_MS);
        m.bareMem.push(await memOf(bare.pid as number));
        if (m.layout) m.barePages.push(await binaryPages(bare.pid as number, m.layout));
        await stopChild(bare);
      }
      await stopChild(agent);
      // The next start must register afresh: the fake forgets nothing, the agent's state says idle.
      await rm(path.join(stateDir, 'state.json'), { force: true });
    };
    for (let i = 0; i < RUNS; i++) {
      // Alternate, the order rotating each round: a setting is not always the one after a warm cache.
      for (let k = 0; k < sets.length; k++) await runOnce(sets[(i + k) % sets.length] as Measured, i, true);
    }
    for (const m of sets) await runOnce(m, RUNS, false);

    const fmt = (xs: number[], unit: string, digits = 1): string =>
      `median ${median(xs).toFixed(digits)} ${unit}, max ${Math.max(...xs).toFixed(digits)} ${unit}`;
    const col = (ms: Mem[], k: keyof Mem): number[] => ms.map((x) => x[k]);
    for (const m of sets) {
      console.log(
        `\n[${m.s.label}: cold start] spawn of \`runner-warden run\` → listener session on the fake API (its first poll follows), ${RUNS} runs, integrity check ${INTEGRITY}`,
      );
      console.log(`  ${fmt(m.startMs, 'ms', 0)} (each: ${m.startMs.map((x) => x.toFixed(0)).join(', ')}) target ≤ 1000 ms`);
      console.log(`  breakdown (median of ${RUNS} runs, ms; from the agent's log timestamps, each phase from the end of the one above):`);
      console.log(`    node start alone (\`node -e 0\`, separate processes)        ${fmt(m.nodeStartMs, 'ms', 0)}`);
      console.log(`    node start + bundle import (nothing run)                  ${fmt(m.bundleLoadMs, 'ms', 0)}`);
      for (const [key, label] of PHASE_LABELS) {
        const xs = m.phases.map((p) => p[key]).filter((x): x is number => x !== undefined);
        if (xs.length > 0) console.log(`    ${label.padEnd(58)}${fmt(xs, 'ms', 0)}`);
      }
      console.log(`\n[${m.s.label}: idle memory] ${SETTLE_MS / 1000} s after the listener's session, ${RUNS} runs (MiB)`);
      for (const [label, ms] of [
        ['agent (installed bundle)', m.agentMem],
        ...(m.lateMem.length > 0 ? [[`agent ${LATE_MS / 1000} s after the session`, m.lateMem] as const] : []),
        ['bare `node -e`', m.bareMem],
      ] as const) {
        console.log(`  ${label}: RSS ${fmt(col(ms, 'rss'), 'MiB')}; PSS ${fmt(col(ms, 'pss'), 'MiB')}`);
        console.log(
          `    of which anonymous (own heap and stacks) ${fmt(col(ms, 'anon'), 'MiB')}, shared file-backed (node binary, libraries) ${fmt(col(ms, 'shared'), 'MiB')}`,
        );
        console.log(
          `    by mapping: node binary ${fmt(col(ms, 'binary'), 'MiB')}; unnamed anonymous (V8 heap, thread arenas, stacks) ${fmt(col(ms, 'mmap'), 'MiB')}; malloc main arena [heap] ${fmt(col(ms, 'brk'), 'MiB')}`,
        );
      }
      if (m.layout) {
        const keys = ['code', 'rodata', 'ICU data', 'symbols', 'other'];
        const of = (ps: Record<string, number>[], k: string): string => median(ps.map((p) => p[k] ?? 0)).toFixed(1);
        console.log(`  node binary's resident pages by section (median MiB, from the page tables): agent / bare`);
        console.log(`    ${keys.map((k) => `${k} ${of(m.agentPages, k)} / ${of(m.barePages, k)}`).join('; ')}`);
      }
      const ratio = median(col(m.agentMem, 'rss')) / median(col(m.bareMem, 'rss'));
      console.log(
        `  agent RSS is ${ratio.toFixed(2)}× a bare node process; agent − bare: RSS ${(median(col(m.agentMem, 'rss')) - median(col(m.bareMem, 'rss'))).toFixed(1)} MiB, anonymous ${(median(col(m.agentMem, 'anon')) - median(col(m.bareMem, 'anon'))).toFixed(1)} MiB`,
      );
      if (m.probe) {
        const bareSet = new Set(m.bareProbe?.modules ?? []);
        const extra = m.probe.modules.filter((b) => !bareSet.has(b)).map((b) => b.replace('NativeModule ', ''));
        const heavy = HEAVY_BUILTINS.filter((h) => extra.some((b) => b.includes(h)));
        console.log(
          `  built-in modules loaded at idle (one extra run with a probe): ${m.probe.modules.length} (bare ${bareSet.size}); beyond bare's, of those named heavy: ${heavy.join(', ') || 'none'}`,
        );
        console.log(`    public ones a bare process has not loaded: ${extra.filter((b) => !b.startsWith('internal/')).join(' ')}`);
        // V8's own account of its heap: what is live (used) and what it holds resident, per space.
        const mib = (x: number): string => (x / 1048576).toFixed(1);
        const sum = (p: Probed | undefined, i: 1 | 2): number => (p?.spaces ?? []).reduce((a, x) => a + x[i], 0);
        const bareOf = new Map((m.bareProbe?.spaces ?? []).map((x) => [x[0], x]));
        console.log(
          `  V8 heap in that run, used / resident MiB: agent ${mib(sum(m.probe, 1))} / ${mib(sum(m.probe, 2))}, bare ${mib(sum(m.bareProbe, 1))} / ${mib(sum(m.bareProbe, 2))}; by space (agent; bare):`,
        );
        console.log(
          `    ${m.probe.spaces
            .filter((x) => x[2] > 0)
            .map(
              (x) =>
                `${x[0].replace(/_space$/, '')} ${mib(x[1])}/${mib(x[2])} (${mib(bareOf.get(x[0])?.[1] ?? 0)}/${mib(bareOf.get(x[0])?.[2] ?? 0)})`,
            )
            .join('; ')}`,
        );
      }
      console.log(`  targets: RSS ≤ 60 MiB, PSS ≤ 40 MiB`);
    }
    if (sets.length > 1) {
      const first = sets[0] as Measured;
      const r = (a: number[], b: number[]): string => (median(a) / median(b)).toFixed(3);
      console.log(`\n[ratios to ${first.s.label}] medians of ${RUNS} alternating runs (< 1: smaller or faster)`);
      for (const m of sets.slice(1)) {
        console.log(
          `  ${m.s.label}: start ${r(m.startMs, first.startMs)}, bundle import ${r(m.bundleLoadMs, first.bundleLoadMs)}, RSS ${r(col(m.agentMem, 'rss'), col(first.agentMem, 'rss'))}, PSS ${r(col(m.agentMem, 'pss'), col(first.agentMem, 'pss'))}, anonymous ${r(col(m.agentMem, 'anon'), col(first.agentMem, 'anon'))}, node binary ${r(col(m.agentMem, 'binary'), col(first.agentMem, 'binary'))}; bare RSS ${r(col(m.bareMem, 'rss'), col(first.bareMem, 'rss'))}${m.lateMem.length > 0 ? `; ${LATE_MS / 1000} s after the session: RSS ${r(col(m.lateMem, 'rss'), col(first.lateMem, 'rss'))}, PSS ${r(col(m.lateMem, 'pss'), col(first.lateMem, 'pss'))}` : ''}`,
        );
      }
    }
    console.log(
      `\n[load average] ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')} at the end (1, 5, 15 min)`,
    );

    const notify: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      try {
        execFileSync('systemd-notify', ['WATCHDOG=1'], {
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NOTIFY_SOCKET: path.join(lab, 'absent.sock') },
          stdio: 'ignore',
        });
      } catch {
        // no socket: the cost of the process is what is measured
      }
      notify.push(performance.now() - t);
    }
    console.log(`\n[watchdog ping] one systemd-notify run: ${fmt(notify, 'ms')} (every 20 s with WatchdogSec=60s)`);
  } finally {
    host?.dispose();
    await fake.close();
    await rm(lab, { recursive: true, force: true });
  }
}

await main();
