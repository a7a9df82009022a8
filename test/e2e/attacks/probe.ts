/**
 * The second job's trace finder, in Python so that it walks names as bytes (newlines, invalid
 * UTF-8) and never opens anything but regular files (O_NOFOLLOW|O_NONBLOCK, like verify). Its
 * configuration arrives base64-encoded inside the step script, so the needles it looks for never
 * appear verbatim in any file or command line of the second job itself.
 *
 * Findings, one list per kind, go to cfg.out as JSON:
 *   processes  processes of the runner user started before this job's listener
 *   proc       /proc/<pid>/cmdline or environ of the runner user holding a needle
 *   needles    files whose name or content holds a needle (search roots below)
 *   absent     paths that must not exist (the first job's per-job dirs, planted paths)
 *   home       the real home differs from its baseline (added, removed, changed type/mode/content)
 *   work       entries of _work that the runner does not make for this job
 *   temp       entries of the temp dirs owned by the runner user
 *   system     crontab, at jobs, SysV IPC objects, message queues of the runner user
 *   unreadable directories or entries the walk could not read (a trace in itself)
 */
export const PROBE_PY = String.raw`
import os, sys, json, base64, stat, hashlib, subprocess, re
cfg = json.loads(base64.b64decode(CFG).decode())
me = os.path.realpath(sys.argv[1]).encode() if len(sys.argv) > 1 else b''
uid = os.getuid()
needles = [n.encode() for n in cfg['needles'] if n]
F = {k: [] for k in ('processes', 'proc', 'needles', 'absent', 'home', 'work', 'temp', 'system', 'unreadable')}
MAXREAD = 8 << 20

def enc(b):
    return b.decode('utf-8', 'backslashreplace')

def fields(pid):
    with open('/proc/%d/stat' % pid, 'rb') as f:
        s = f.read()
    rest = s[s.rindex(b')') + 2:].split()
    return int(rest[1]), int(rest[19]), rest[0].decode(), enc(s[s.index(b'(') + 1:s.rindex(b')')])

def owner(pid):
    try:
        return os.stat('/proc/%d' % pid).st_uid
    except OSError:
        return -1

# Processes: the listener is the topmost ancestor of ours that runs as this user.
top = os.getpid()
while True:
    try:
        pp = fields(top)[0]
    except OSError:
        break
    if pp <= 1 or owner(pp) != uid:
        break
    top = pp
t0 = fields(top)[1]
# This job's own container engine (docker.mode isolated) is started by the agent before the
# listener, as the runner user: its processes descend from the one whose command line names the
# engine's directory, the directory of this job's DOCKER_HOST socket (a fresh name per job, which
# the first job could not have known). Anything else started before the listener is a trace.
dh = os.environ.get('DOCKER_HOST', '')
engine_dir = (os.path.dirname(dh[len('unix://'):]) + '/').encode() if dh.startswith('unix://') else b''
def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read()
    except OSError:
        return b''
def own_engine(pid):
    if not engine_dir:
        return False
    seen = 0
    while pid > 1 and seen < 64:
        if engine_dir in cmdline(pid):
            return True
        try:
            pid = fields(pid)[0]
        except OSError:
            return False
        seen += 1
    return False
for e in os.listdir('/proc'):
    if not e.isdigit():
        continue
    pid = int(e)
    if owner(pid) != uid:
        continue
    try:
        _, st0, state, comm = fields(pid)
    except OSError:
        continue
    data = {}
    for part in ('cmdline', 'environ'):
        try:
            with open('/proc/%d/%s' % (pid, part), 'rb') as f:
                data[part] = f.read()
        except OSError:
            data[part] = b''
    # A zombie runs nothing; here PID 1 does not reap, so the listener's exited children stay as Z.
    if st0 < t0 and state != 'Z' and not own_engine(pid):
        F['processes'].append('%d %s (%s) ppid %d start %d < listener %d start %d: %s' % (pid, state, comm, fields(pid)[0], st0, top, t0, enc(data['cmdline'].replace(b'\0', b' '))))
    for part, d in data.items():
        for n in needles:
            if n in d:
                F['proc'].append('%d %s holds %s' % (pid, part, n.decode()))

def read_regular(p):
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, total = [], 0
        while total < MAXREAD:
            c = os.read(fd, 1 << 20)
            if not c:
                break
            chunks.append(c)
            total += len(c)
        return b''.join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)

def walk(root, skip=()):
    rootb = root.encode() if isinstance(root, str) else root
    try:
        rst = os.lstat(rootb)
    except OSError:
        return
    if not stat.S_ISDIR(rst.st_mode):
        return
    stack = [(b'', rst.st_uid)]
    while stack:
        rel, downer = stack.pop()
        d = rootb + (b'/' + rel if rel else b'')
        try:
            names = os.listdir(d)
        except OSError as e:
            # Someone else's private directory is not a trace; one of the runner user's is.
            if downer == uid:
                F['unreadable'].append('%s: %s' % (enc(d), e.strerror))
            continue
        for n in names:
            r = rel + b'/' + n if rel else n
            p = rootb + b'/' + r
            if p == me or any(p == s or p.startswith(s + b'/') for s in skip):
                continue
            try:
                st = os.lstat(p)
            except OSError as e:
                F['unreadable'].append('%s: %s' % (enc(p), e.strerror))
                continue
            yield r, p, st
            if stat.S_ISDIR(st.st_mode) and st.st_dev == rst.st_dev:
                stack.append((r, st.st_uid))

def needle_check(p, st, data=None):
    base = os.path.basename(p)
    for n in needles:
        if n in base:
            F['needles'].append('%s: name holds %s' % (enc(p), n.decode()))
    if stat.S_ISREG(st.st_mode) and st.st_size > 0:
        if data is None:
            data = read_regular(p)
        if data:
            for n in needles:
                if n in data:
                    F['needles'].append('%s: content holds %s' % (enc(p), n.decode()))

def kind(st):
    m = st.st_mode
    return 'd' if stat.S_ISDIR(m) else 'f' if stat.S_ISREG(m) else 'l' if stat.S_ISLNK(m) else 'p' if stat.S_ISFIFO(m) else 's' if stat.S_ISSOCK(m) else 'o'

# The real home against its baseline (type, mode, content), and needles in it.
home = cfg['home']
seen = set()
for r, p, st in walk(cfg['realHome']):
    key = r.decode('latin1')
    seen.add(key)
    data = read_regular(p) if stat.S_ISREG(st.st_mode) else None
    extra = ''
    if stat.S_ISREG(st.st_mode):
        extra = hashlib.sha256(data).hexdigest() if data is not None else '?'
    elif stat.S_ISLNK(st.st_mode):
        extra = enc(os.readlink(p))
    rep = '%s %o %s' % (kind(st), stat.S_IMODE(st.st_mode), extra)
    if key not in home:
        F['home'].append('added %s (%s)' % (enc(r), rep))
    elif home[key] != rep:
        F['home'].append('changed %s: %s, baseline %s' % (enc(r), rep, home[key]))
    needle_check(p, st, data)
for key in home:
    if key not in seen:
        F['home'].append('removed %s' % key)

# _work: only what the runner makes for this job.
allow = [re.compile(x) for x in cfg['workAllow']]
for r, p, st in walk(cfg['work']):
    rs = r.decode('latin1')
    if not any(a.fullmatch(rs) for a in allow):
        F['work'].append('%s (%s %o)' % (enc(r), kind(st), stat.S_IMODE(st.st_mode)))
    needle_check(p, st)

# Temp dirs: nothing of the runner user.
for t in cfg['temp']:
    for r, p, st in walk(t):
        if st.st_uid == uid:
            F['temp'].append('%s (%s)' % (enc(p), kind(st)))
        needle_check(p, st)

# Other places a trace could sit: this job's own dirs, the runner root (not _work, not _diag).
roots = [(os.environ.get(v, ''), ()) for v in ('HOME', 'TMPDIR', 'DOCKER_CONFIG')]
roots.append((cfg['runnerRoot'], tuple(s.encode() for s in cfg['runnerSkip'])))
roots += [(x, ()) for x in cfg.get('extraRoots', [])]
for root, skip in roots:
    if root:
        for r, p, st in walk(root, skip):
            needle_check(p, st)

# Paths that must be gone: planted ones, and the first job's per-job dirs.
absent = list(cfg.get('absent', []))
try:
    with open(cfg['job1Dirs'], 'rb') as f:
        absent += [l.decode() for l in f.read().split(b'\n') if l.strip()]
except OSError:
    pass
for a in absent:
    try:
        os.lstat(a)
        F['absent'].append(a)
        for r, p, st in walk(a):
            needle_check(p, st)
    except OSError:
        pass

# System objects of the user.
def run(argv):
    try:
        return subprocess.run(argv, capture_output=True, timeout=10)
    except Exception:
        return None
c = run(['crontab', '-l'])
if c is not None and c.returncode == 0 and c.stdout.strip():
    F['system'].append('crontab: ' + enc(c.stdout.strip()))
c = run(['atq'])
if c is not None and c.stdout.strip():
    F['system'].append('at jobs: ' + enc(c.stdout.strip()))
for k in ('shm', 'sem', 'msg'):
    try:
        with open('/proc/sysvipc/' + k) as f:
            lines = f.read().strip().split('\n')
    except OSError:
        continue
    head = lines[0].split()
    cols = [i for i, h in enumerate(head) if h in ('uid', 'cuid')]
    for line in lines[1:]:
        v = line.split()
        if any(i < len(v) and v[i] == str(uid) for i in cols):
            F['system'].append('SysV %s: %s' % (k, line.strip()))
try:
    for q in os.listdir('/dev/mqueue'):
        if os.lstat('/dev/mqueue/' + q).st_uid == uid:
            F['system'].append('mqueue ' + q)
except OSError:
    pass

with open(cfg['out'], 'w') as f:
    json.dump(F, f, indent=1)
`;
