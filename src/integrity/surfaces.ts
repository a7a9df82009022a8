/**
 * The catalogue of persistence surfaces: where each lives, what a change there means, and the
 * built-in exceptions for legitimate churn. docs/integrity.md explains each at length.
 */
import type { SurfaceName } from './types.js';
import { GlobSet } from './glob.js';

/** One file-tree surface: walked under the check's root prefix. */
export interface TreeSurface {
  surface: SurfaceName;
  /** Host-view absolute paths walked recursively (a missing one is simply absent). */
  paths: string[];
  /** Record only setuid/setgid regular files (the setuid surface). */
  setuidOnly?: boolean;
  /** Entries this many levels below a start at most (1: the start's own entries). */
  maxDepth?: number;
}

/** What a change on each surface means; printed by docs and kept beside the code that reads it. */
export const SURFACE_MEANING: Record<SurfaceName, string> = {
  etc: 'system configuration: cron.d, profile.d, ld.so.preload, sudoers, hosts, PAM, systemd units, CA trust; a change runs code as root or redirects traffic for every later job',
  'usr-local': 'first on PATH: a new /usr/local/bin/git shadows the real one for every later job; local CA certificates',
  'opt-srv': "third-party software and served data (the runner root and the agent's own directories left out)",
  'root-home': "root's shell start-up files, ssh keys, tool configuration",
  'authorized-keys': "every user's ~/.ssh/authorized_keys: a new line is a remote login",
  cron: 'crontabs of every user and at jobs (/var/spool/cron, /var/spool/at)',
  systemd:
    'units, generators and hooks under /usr/lib/systemd, runtime and transient units, udev rules, the /usr/lib and /run sides of tmpfiles.d, sysctl.d, modprobe.d and the like, lingering users (a user manager that outlives logins)',
  setuid:
    "every entry of the system binary directories (a replaced git or sudo), git's helpers and hook templates, PAM modules, the top of python3 dist-packages (.pth files run at every start) and of the standard library (sitecustomize.py); setuid/setgid files and file capabilities in temp directories and homes: a root shell for anyone who finds it",
  accounts: 'users and groups from the password and group databases: a new user, a uid 0 alias, a new member of sudo or docker',
  modules: 'loaded kernel modules: a rootkit, or a capability the image did not have',
  mounts: 'the mount table: a bind mount over a system path changes what every later job runs',
  netfilter: "netfilter rules (iptables-save, ip6tables-save, nft): a redirect of later jobs' traffic, or an opened port",
  routes: 'the routing tables: traffic of later jobs sent through another gateway',
  sysctl: 'security-relevant kernel settings: core_pattern and modprobe run programs as root, forwarding, ptrace scope',
  listeners: 'listening sockets that were not there at baseline: a backdoor or a leftover service',
  processes: 'processes of users other than the runner user (root included) that were not there at baseline',
  'package-state':
    'the set of installed packages and their versions, and their maintainer scripts (run as root at the next package operation)',
  boot: 'the kernels, initramfs images and boot loader configuration: code run as root at the next boot',
  bpf: "eBPF programs, links and maps created since the job started (bpftool): a program attached to a cgroup, an interface or a hook, or pinned, outlives the job and can watch or steer later jobs' traffic and system calls",
  usr: 'the rest of /usr (shared libraries, /usr/share): a replaced library or data file every later job loads',
  var: 'system state under /var beyond logs and caches: maintainer scripts, polkit grants, served data',
};

/** Python's standard library directories of the Debian and Ubuntu releases a runner image is built on. */
const PYTHON_STDLIBS = ['8', '9', '10', '11', '12', '13', '14'].map((v) => `/usr/lib/python3.${v}`);

/**
 * The file trees of each surface. `excluded` (the runner root, the agent's state and job dirs) is
 * removed by the walker; exceptions are applied by the comparison.
 */
export function treeSurfaces(enabled: ReadonlySet<SurfaceName>, homes: readonly string[]): TreeSurface[] {
  const out: TreeSurface[] = [];
  const add = (surface: SurfaceName, paths: string[], setuidOnly = false, maxDepth?: number): void => {
    if (enabled.has(surface)) out.push({ surface, paths, ...(setuidOnly ? { setuidOnly } : {}), ...(maxDepth ? { maxDepth } : {}) });
  };
  add('etc', ['/etc']);
  add('usr-local', ['/usr/local']);
  add('opt-srv', ['/opt', '/srv']);
  add('root-home', ['/root']);
  add(
    'authorized-keys',
    homes.filter((h) => h !== '/root' && h !== '/').flatMap((h) => [`${h}/.ssh/authorized_keys`, `${h}/.ssh/authorized_keys2`]),
  );
  add('cron', ['/var/spool/cron', '/var/spool/at']);
  // All of /usr/lib/systemd: units, and the generators, shutdown and sleep hooks it runs as root;
  // udev rules (RUN+= on a device event) and the other directories of configuration that systemd
  // reads from /usr/lib as well as /etc.
  add('systemd', [
    '/usr/lib/systemd',
    '/lib/systemd',
    '/usr/lib/udev',
    '/usr/lib/tmpfiles.d',
    '/usr/lib/sysctl.d',
    '/usr/lib/modprobe.d',
    '/usr/lib/modules-load.d',
    '/usr/lib/binfmt.d',
    '/usr/lib/environment.d',
    '/usr/lib/sysusers.d',
    '/run/systemd/system',
    '/run/systemd/transient',
    '/var/lib/systemd/linger',
    // The runtime side of the same configuration: read like /etc until the next boot, which a
    // reused host may never see. A udev rule here runs on the next device event (the next job's
    // engine makes a veth); tmpfiles.d, sysctl.d and modprobe.d lines run or apply as root the next
    // time their tool runs; `systemctl set-property --runtime` and `--runtime` drop-ins land in
    // system.control and system. Not the generator directories: systemd rewrites them at every reload.
    '/run/udev/rules.d',
    '/run/tmpfiles.d',
    '/run/sysctl.d',
    '/run/modprobe.d',
    '/run/modules-load.d',
    '/run/binfmt.d',
    '/run/environment.d',
    '/run/sysusers.d',
    '/run/systemd/system.control',
    '/run/systemd/user',
    '/run/systemd/network',
    '/run/NetworkManager/conf.d',
  ]);
  // The system binary directories, every entry: a replaced /usr/bin/git or sudo runs for every
  // later job as surely as a new one in /usr/local/bin (the walk reads them all for setuid bits anyway).
  // PAM modules too (a replaced pam_unix.so accepts any password).
  add('setuid', [
    '/usr/bin',
    '/usr/sbin',
    '/bin',
    '/sbin',
    '/usr/libexec',
    '/usr/lib/openssh',
    '/usr/lib/dbus-1.0',
    '/usr/lib/security',
    '/usr/lib/x86_64-linux-gnu/security',
    '/usr/lib/aarch64-linux-gnu/security',
    // git's own helpers (every https fetch of a later checkout runs git-remote-https) and the
    // templates `git init` and every clone copy into the new repository, hooks included: a
    // post-checkout hook there runs in the next job's checkout.
    '/usr/lib/git-core',
    '/usr/share/git-core/templates',
  ]);
  // Python runs every .pth file and sitecustomize at the top of its site directories at start:
  // their own entries only, not the packages below.
  add('setuid', ['/usr/lib/python3/dist-packages'], false, 1);
  // The standard library's top level: site.py, os.py and sitecustomize.py are imported at every
  // start of the interpreter. Each release Debian and Ubuntu ship (a missing one is absent).
  add('setuid', PYTHON_STDLIBS, false, 1);
  // Setuid and setgid files anywhere an unprivileged user can reach and write. A full walk of every
  // local file system costs seconds (docs/integrity.md weighs it); the mount table catches a
  // remount without nosuid.
  add('setuid', ['/tmp', '/var/tmp', '/dev/shm', '/home', '/var/mail', '/var/local'], true);
  add('boot', ['/boot']);
  // Maintainer scripts: a changed postinst runs as root at that package's next install, upgrade or
  // trigger (libc-bin's on every library a later job installs). Metadata only; excepted with the
  // rest of the package database when allowPackages is set.
  add('package-state', ['/var/lib/dpkg/info']);
  // Last: paths the surfaces above also reach keep those surfaces (and their content comparison).
  add('usr', ['/usr/lib', '/usr/share', '/usr/include', '/usr/src', '/usr/games', '/usr/lib32', '/usr/lib64', '/usr/libx32']);
  add('var', ['/var']);
  return out;
}

/**
 * Built-in exceptions: churn on an idle Debian or Ubuntu host and of benign jobs. Each line says
 * why in docs/integrity.md ("Defaults").
 */
export const DEFAULT_EXCEPTIONS: readonly string[] = [
  // Rewritten by hwclock with the clock's drift. Not /etc/resolv.conf: another name server
  // redirects every later job's traffic, and a DHCP renewal rewrites it with the same bytes.
  '/etc/adjtime',
  // Lock files the account tools create and remove around any read of the databases.
  '/etc/.pwd.lock',
  // Root's caches (not consulted as configuration).
  '/root/.cache/**',
  '/root/.npm/_logs/**',
  '/root/.lesshst',
  '/root/.bash_history',
  '/root/.viminfo',
  // Session scopes systemd-logind creates per login.
  '/run/systemd/transient/session-*.scope',
  '/run/systemd/transient/session-*.scope.d/**',
  // Kernel modules the kernel loads on demand when an unprivileged process uses netfilter or a
  // veth pair in its own network namespace (a rootless engine does): not a job's choice.
  'module:nf_*',
  'module:nft_*',
  'module:xt_*',
  'module:ip_tables',
  'module:ip6_tables',
  'module:iptable_*',
  'module:ip6table_*',
  'module:veth',
  'module:tun',
  'module:overlay',
  // Per-user runtime mounts (logind) and per-job engine mounts under the runner user's runtime dir.
  'mount:/run/user/**',
  // Not mount:/proc/sys/fs/binfmt_misc: kernel-state.ts leaves out only systemd's own mounts there
  // (autofs, binfmt_misc); anything else stacked on it hides the handlers from the check.
  'process:_apt:**',
  'process:man:**',
  'listener:udp:*:68',
  'listener:udp6:*:546',
  // GRUB rewrites its environment block at boot (recordfail) on Ubuntu.
  '/boot/grub/grubenv',
  // at's job-number counter, bumped by every `at` of any user (a job's own at job is removed by the
  // cleanup); a queued job is a new file beside it and stays drift.
  '/var/spool/cron/atjobs/.SEQ',
  '/var/spool/at/.SEQ',
];

/**
 * Churn of the `var` surface only (an exception of the surface, not of a path everywhere: a home
 * under /var/cache still has its authorized_keys checked): logs, caches, spools of mail and print,
 * crash dumps, backups the daily timers write, temp (its setuid files stay checked), and the state
 * of daemons and timers that changes on an idle host. Not where a later job's code comes from.
 */
export const VAR_CHURN: readonly string[] = [
  '/var/log/**',
  '/var/cache/**',
  '/var/tmp/**',
  '/var/crash/**',
  '/var/backups/**',
  '/var/mail/**',
  '/var/spool/postfix/**',
  '/var/spool/rsyslog/**',
  '/var/spool/anacron/**',
  '/var/lib/apt/lists/**',
  '/var/lib/apt/periodic/**',
  '/var/lib/apt/extended_states',
  '/var/lib/systemd/timers/**',
  '/var/lib/systemd/random-seed',
  '/var/lib/systemd/timesync/**',
  '/var/lib/systemd/coredump/**',
  '/var/lib/systemd/pstore/**',
  '/var/lib/systemd/backlight/**',
  '/var/lib/systemd/rfkill/**',
  '/var/lib/systemd/catalog/**',
  '/var/lib/sudo/**',
  '/var/lib/dhcp/**',
  '/var/lib/dhclient/**',
  '/var/lib/NetworkManager/**',
  '/var/lib/logrotate/**',
  '/var/lib/man-db/**',
  '/var/lib/chrony/**',
  '/var/lib/ntp/**',
  '/var/lib/rsyslog/**',
  '/var/lib/private/**',
  '/var/lib/docker/**',
  '/var/lib/containerd/**',
  '/var/lib/snapd/**',
  '/var/lib/update-notifier/**',
  '/var/lib/ubuntu-advantage/**',
  '/var/lib/command-not-found/**',
  '/var/lib/PackageKit/**',
  '/var/lib/fwupd/**',
  '/var/lib/apport/**',
  '/var/lib/upower/**',
  '/var/lib/udisks2/**',
  '/var/lib/plymouth/**',
  '/var/lib/cloud/instances/*/sem/**',
  '/var/lib/waagent/**',
  '/var/lib/amazon/**',
  '/var/lib/google/**',
  '/var/lib/unattended-upgrades/**',
  '/var/lib/dpkg/lock*',
  '/var/lib/dpkg/triggers/Lock',
  '/var/lib/apt/lists/lock',
];

/** Exceptions that hold on one surface only (the walk and the comparison apply them there). */
export const SURFACE_EXCEPTIONS: Partial<Record<SurfaceName, readonly string[]>> = { var: VAR_CHURN };

let surfaceGlobs: Partial<Record<SurfaceName, GlobSet>> | undefined;
/** SURFACE_EXCEPTIONS compiled (once, on first use). */
export function surfaceExceptions(): Partial<Record<SurfaceName, GlobSet>> {
  surfaceGlobs ??= Object.fromEntries(Object.entries(SURFACE_EXCEPTIONS).map(([k, v]) => [k, new GlobSet(v)]));
  return surfaceGlobs;
}

/**
 * Processes inside these systemd units are never drift: the daily timers of an idle Debian host,
 * and cron, whose jobs come from crontabs the etc and cron surfaces already compare.
 */
export const TRANSIENT_UNITS: readonly string[] = [
  'apt-daily.service',
  'apt-daily-upgrade.service',
  'unattended-upgrades.service',
  'man-db.service',
  'logrotate.service',
  'e2scrub_all.service',
  'e2scrub_reap.service',
  'fstrim.service',
  'dpkg-db-backup.service',
  'systemd-tmpfiles-clean.service',
  'cron.service',
  'anacron.service',
];

/** Package-manager state, excepted when policy `host.integrity.allowPackages` is true. */
export const PACKAGE_EXCEPTIONS: readonly string[] = [
  '/etc/ld.so.cache',
  '/etc/alternatives/**',
  '/var/lib/dpkg/**',
  '/var/lib/apt/**',
  '/var/cache/apt/**',
  '/var/cache/debconf/**',
  '/var/cache/ldconfig/**',
  'package:*',
  // Not /etc/apt (a source list or an APT::Update::Pre-Invoke hook is persistence), not the CA
  // trust in /etc/ssl/certs: installing packages does not need either to change.
];

/** The chosen sysctls (host view under /proc/sys); each is a known persistence or weakening knob. */
export const SYSCTLS: readonly string[] = [
  // Set for good by an out-of-tree, unsigned or forced module, a kernel oops or warning.
  'kernel/tainted',
  'kernel/core_pattern',
  'kernel/modprobe',
  // The uevent helper (where the kernel has one): run as root on every device event, such as the
  // veth of the next job's engine. And the command an orderly poweroff the kernel asks for runs.
  'kernel/hotplug',
  'kernel/poweroff_cmd',
  'kernel/modules_disabled',
  'kernel/kptr_restrict',
  'kernel/dmesg_restrict',
  'kernel/yama/ptrace_scope',
  'kernel/unprivileged_bpf_disabled',
  'kernel/randomize_va_space',
  'kernel/sysrq',
  'kernel/perf_event_paranoid',
  'kernel/kexec_load_disabled',
  'kernel/unprivileged_userns_clone',
  'user/max_user_namespaces',
  'fs/protected_symlinks',
  'fs/protected_hardlinks',
  'fs/protected_fifos',
  'fs/protected_regular',
  'fs/suid_dumpable',
  'vm/mmap_min_addr',
  'net/core/bpf_jit_harden',
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/forwarding',
  'net/ipv4/conf/all/rp_filter',
  'net/ipv4/conf/all/accept_redirects',
  'net/ipv4/conf/all/send_redirects',
  'net/ipv4/conf/all/accept_source_route',
  'net/ipv4/conf/all/route_localnet',
  'net/ipv4/ip_unprivileged_port_start',
  'net/ipv4/ping_group_range',
  'net/ipv6/conf/all/forwarding',
  'net/ipv6/conf/all/disable_ipv6',
  // What every interface made later starts with (each job's engine makes a veth).
  'net/ipv4/conf/default/forwarding',
  'net/ipv4/conf/default/rp_filter',
  'net/ipv4/conf/default/accept_redirects',
  'net/ipv4/conf/default/send_redirects',
  'net/ipv4/conf/default/accept_source_route',
  'net/ipv4/conf/default/route_localnet',
  'net/ipv6/conf/default/forwarding',
  'net/ipv6/conf/default/accept_redirects',
  // Kernel attack surface opened to later unprivileged jobs: io_uring, userfaultfd (an exploit's
  // race primitive), line disciplines loaded on demand, TIOCSTI keystroke injection into a terminal,
  // Ubuntu's restriction of unprivileged user namespaces.
  'kernel/io_uring_disabled',
  'vm/unprivileged_userfaultfd',
  'dev/tty/ldisc_autoload',
  'dev/tty/legacy_tiocsti',
  'kernel/apparmor_restrict_unprivileged_userns',
];

/** Small configuration files hashed at every check, whatever their metadata says. */
export const ALWAYS_HASH: readonly string[] = [
  '/etc/ld.so.preload',
  '/etc/passwd',
  '/etc/shadow',
  '/etc/group',
  '/etc/gshadow',
  '/etc/sudoers',
  '/etc/hosts',
  '/etc/crontab',
  '/etc/environment',
  '/etc/profile',
  '/etc/bash.bashrc',
  '/etc/nsswitch.conf',
  '/root/.ssh/authorized_keys',
  '/root/.bashrc',
  '/root/.profile',
];

/** The directories every walk leaves out: the runner's and the agent's own (host view). */
export function agentExclusions(slot: {
  runnerRoot: string;
  stateDir: string;
  jobRoot: string;
  trashDir: string;
  workDir: string;
}): string[] {
  return [...new Set([slot.runnerRoot, slot.workDir, slot.stateDir, slot.jobRoot, slot.trashDir])];
}

/** Every exception in force for a policy: the defaults, package state when allowed, the team's. */
export function exceptionPatterns(p: { exceptions: readonly string[]; allowPackages: boolean }): string[] {
  return [...DEFAULT_EXCEPTIONS, ...(p.allowPackages ? PACKAGE_EXCEPTIONS : []), ...p.exceptions];
}
