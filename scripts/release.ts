/**
 * `npm run release`: the artifacts an image pipeline installs offline, in release/ (or --out DIR).
 *
 *   runner-warden-<version>.tar.gz       the bundle, bin, unit, example config, policies, man page,
 *                                        bash and zsh completion, LICENSE; needs Node >= 20.19
 *   runner-warden_<version>-1_amd64.deb  the same laid out for Debian, with its own Node (the
 *                                        newest LTS, packaging/node.json): bookworm's nodejs is 18
 *   SHA256SUMS
 *
 *   node --import tsx scripts/release.ts [--out DIR] [--no-deb] [--lintian]
 *
 * Reproducible: file times are the last commit's (SOURCE_DATE_EPOCH), owners root, names sorted.
 * The Node binary comes from the npm registry (`npm pack`) and is checked against the integrity
 * pinned in packaging/node.json; it is cached in node_modules/.cache between runs.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { buildBundle, CONTAINER_HOOKS_FILE } from './build.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEB_ARCH = 'amd64';
/** Where the Debian package puts the agent: its own tree, FHS's place for a program's private files. */
export const DEB_PREFIX = '/usr/lib/runner-warden';
const DEB_MAINTAINER = 'runner-warden maintainers <runner-warden@users.noreply.github.com>';

interface Pkg {
  version: string;
  description: string;
  engines: { node: string };
  homepage?: string;
}

const run = (cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string =>
  execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });

/** Seconds since the epoch of the last commit (reproducible file times), or now outside git. */
function sourceDateEpoch(): number {
  try {
    return Number(run('git', ['log', '-1', '--format=%ct'], { cwd: ROOT }).trim());
  } catch {
    return Math.floor(Date.now() / 1000);
  }
}

async function put(file: string, text: string | Buffer, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  await writeFile(file, text);
  await chmod(file, mode);
}

async function copy(from: string, to: string, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(to), { recursive: true, mode: 0o755 });
  await copyFile(from, to);
  await chmod(to, mode);
}

/** The program tree shared by the tarball and the .deb: bin, the bundle, package.json, policies. */
async function programTree(dir: string, dist: string, pkg: Pkg): Promise<void> {
  await copy(path.join(ROOT, 'bin/runner-warden.js'), path.join(dir, 'bin/runner-warden.js'), 0o755);
  for (const f of await readdir(dist)) {
    if (f.endsWith('.mjs') || f === CONTAINER_HOOKS_FILE || f === 'THIRD-PARTY-NOTICES.txt')
      await copy(path.join(dist, f), path.join(dir, 'dist', f));
  }
  // bin/runner-warden.js is an ES module; this is all of package.json it needs.
  const manifest = {
    name: 'runner-warden',
    version: pkg.version,
    type: 'module',
    engines: pkg.engines,
    bin: { 'runner-warden': 'bin/runner-warden.js' },
  };
  await put(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  // The demo copies the example policies from here.
  for (const f of await readdir(path.join(ROOT, 'policies'))) {
    if (f.endsWith('.yaml')) await copy(path.join(ROOT, 'policies', f), path.join(dir, 'policies', f));
  }
}

/** Tars `dir`'s content reproducibly (GNU tar). */
function tarball(cwd: string, entries: string[], out: string, epoch: number): void {
  run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', `--mtime=@${epoch}`, '--format=gnu', '-czf', out, ...entries], {
    cwd,
    env: { ...process.env, GZIP: '-n' },
  });
}

/** The release tarball: one top directory, runner-warden-<version>/. */
async function buildTarball(work: string, dist: string, pkg: Pkg, out: string, epoch: number): Promise<string> {
  const name = `runner-warden-${pkg.version}`;
  const top = path.join(work, 'tar', name);
  await programTree(top, dist, pkg);
  await copy(path.join(ROOT, 'packaging/systemd/runner-warden.service'), path.join(top, 'systemd/runner-warden.service'));
  await copy(path.join(ROOT, 'packaging/config.example.yaml'), path.join(top, 'config.example.yaml'));
  await copy(path.join(ROOT, 'packaging/man/runner-warden.1'), path.join(top, 'man/runner-warden.1'));
  await copy(path.join(ROOT, 'packaging/completions/runner-warden.bash'), path.join(top, 'completions/runner-warden.bash'));
  await copy(path.join(ROOT, 'packaging/completions/_runner-warden'), path.join(top, 'completions/_runner-warden'));
  await copy(path.join(ROOT, 'LICENSE'), path.join(top, 'LICENSE'));
  await copy(path.join(ROOT, 'README.md'), path.join(top, 'README.md'));
  const file = path.join(out, `${name}.tar.gz`);
  tarball(path.join(work, 'tar'), [name], file, epoch);
  return file;
}

/** The pinned Node binary for `arch`, fetched once with `npm pack` and checked against its integrity. */
async function nodeBinary(arch: string): Promise<{ dir: string; version: string }> {
  const pin = JSON.parse(await readFile(path.join(ROOT, 'packaging/node.json'), 'utf8')) as {
    version: string;
    packages: Record<string, { name: string; integrity: string }>;
  };
  const p = pin.packages[arch];
  if (!p) throw new Error(`packaging/node.json: packages.${arch}: expected the npm package of Node for ${arch}`);
  const cache = path.join(ROOT, 'node_modules/.cache/runner-warden-node');
  const tgz = path.join(cache, `${p.name}-${pin.version}.tgz`);
  if (!existsSync(tgz)) {
    await mkdir(cache, { recursive: true });
    run('npm', ['pack', `${p.name}@${pin.version}`, '--pack-destination', cache, '--silent']);
  }
  const [algo, expected] = p.integrity.split('-', 2) as [string, string];
  const actual = createHash(algo)
    .update(await readFile(tgz))
    .digest('base64');
  if (actual !== expected) {
    await rm(tgz, { force: true });
    throw new Error(`${p.name}@${pin.version}: integrity ${algo}-${actual} is not the pinned ${p.integrity} (packaging/node.json)`);
  }
  const dir = path.join(cache, `${p.name}-${pin.version}`);
  if (!existsSync(path.join(dir, 'bin/node'))) {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    run('tar', ['-xzf', tgz, '-C', dir, '--strip-components=1', 'package/bin/node', 'package/LICENSE']);
    // The official binary carries debug information and its symbol table (a fifth of its size);
    // stripped as Debian strips its own binaries (the dynamic symbols addons link against stay).
    run('strip', ['--strip-unneeded', '--remove-section=.comment', '--remove-section=.note', path.join(dir, 'bin/node')]);
  }
  return { dir, version: pin.version };
}

function debCopyright(pkg: Pkg, license: string[]): string {
  return [
    'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
    'Upstream-Name: runner-warden',
    `Source: ${pkg.homepage ?? 'https://github.com/runner-warden/runner-warden'}`,
    '',
    'Files: *',
    'Copyright: 2026 The runner-warden authors',
    'License: Expat',
    '',
    `Files: ${DEB_PREFIX}/dist/*`,
    'Copyright: 2026 The runner-warden authors, and the authors of the bundled npm packages',
    'License: Expat and others',
    ` The bundled packages and their licences are listed in ${DEB_PREFIX}/dist/THIRD-PARTY-NOTICES.txt.`,
    '',
    `Files: ${DEB_PREFIX}/node/*`,
    'Copyright: Node.js contributors and others',
    'License: Expat and others',
    ` The Node.js licence, with those of its dependencies, is ${DEB_PREFIX}/node/LICENSE.`,
    '',
    'License: Expat',
    ...license.map((l) => (l === '' ? ' .' : ` ${l}`)),
    '',
  ].join('\n');
}

/** Maintainer scripts: create the state directory; never enable or start the agent (see README). */
const POSTINST = `#!/bin/sh
set -e
if [ "$1" = configure ]; then
  # The config directory holds credentials: root only. State: traversable by the runner user (hook
  # scripts, events drop directory), not listable.
  install -d -m 0700 /etc/runner-warden
  install -d -m 0711 /var/lib/runner-warden
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
    # Never enabled or started here: an image bake must not register a runner, and there is no
    # config yet. An upgrade does not restart a running agent either (a restart drains its job).
    if [ -n "$2" ] && systemctl is-active --quiet runner-warden.service; then
      echo "runner-warden: the running agent keeps the previous version until: systemctl restart runner-warden (it drains first)"
    fi
  fi
fi
exit 0
`;

const PRERM = `#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  # Stopping drains: an idle runner is deregistered, a busy job gets its grace period.
  deb-systemd-invoke stop runner-warden.service >/dev/null || true
fi
exit 0
`;

const POSTRM = `#!/bin/sh
set -e
if [ "$1" = purge ]; then
  rm -rf /var/lib/runner-warden
  rm -f /etc/systemd/system/multi-user.target.wants/runner-warden.service
fi
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
fi
exit 0
`;

/** The Debian package, built with dpkg-deb from a staged root. */
async function buildDeb(work: string, dist: string, pkg: Pkg, out: string, epoch: number): Promise<string> {
  const root = path.join(work, 'deb');
  const lib = path.join(root, DEB_PREFIX.slice(1));
  await programTree(lib, dist, pkg);
  const node = await nodeBinary(DEB_ARCH);
  await copy(path.join(node.dir, 'bin/node'), path.join(lib, 'node/bin/node'), 0o755);
  await copy(path.join(node.dir, 'LICENSE'), path.join(lib, 'node/LICENSE'));
  // The command runs on the shipped Node: its #! names it, and /usr/bin/runner-warden links to it
  // (exec'd directly, so the agent keeps the PID systemd started).
  const entry = path.join(lib, 'bin/runner-warden.js');
  const script = (await readFile(entry, 'utf8')).replace(/^#!.*\n/, `#!${DEB_PREFIX}/node/bin/node\n`);
  await put(entry, script, 0o755);
  await mkdir(path.join(root, 'usr/bin'), { recursive: true, mode: 0o755 });
  await symlink(`../lib/runner-warden/bin/runner-warden.js`, path.join(root, 'usr/bin/runner-warden'));
  await copy(path.join(ROOT, 'packaging/systemd/runner-warden.service'), path.join(root, 'lib/systemd/system/runner-warden.service'));
  // The image cache (policy docker.mirror): its units, their restart backoff and the registry's
  // configuration. Never enabled here: it needs Debian's docker-registry (Suggests), and a host
  // whose jobs get no engine has no use for it.
  for (const unit of ['runner-warden-mirror.service', 'runner-warden-mirror-gc.service']) {
    await copy(path.join(ROOT, 'packaging/systemd', unit), path.join(root, 'lib/systemd/system', unit));
  }
  await copy(path.join(ROOT, 'packaging/systemd/runner-warden-mirror-backoff'), path.join(lib, 'mirror-backoff'), 0o755);
  await copy(path.join(ROOT, 'packaging/systemd/runner-warden-mirror.yml'), path.join(root, 'etc/runner-warden-mirror/config.yml'));
  const doc = path.join(root, 'usr/share/doc/runner-warden');
  await copy(path.join(ROOT, 'packaging/config.example.yaml'), path.join(doc, 'examples/config.example.yaml'));
  // The licence text without its title and copyright line (those are fields above).
  const license = (await readFile(path.join(ROOT, 'LICENSE'), 'utf8')).split('\n').slice(3).join('\n').trim().split('\n');
  await put(path.join(doc, 'copyright'), debCopyright(pkg, license));
  const date = new Date(epoch * 1000).toUTCString().replace('GMT', '+0000');
  await put(
    path.join(doc, 'changelog.Debian.gz'),
    gzipSync(
      `runner-warden (${pkg.version}-1) unstable; urgency=medium\n\n  * Release ${pkg.version}.\n\n -- ${DEB_MAINTAINER}  ${date}\n`,
      { level: 9 },
    ),
  );
  await put(path.join(doc, 'README.md.gz'), gzipSync(await readFile(path.join(ROOT, 'README.md')), { level: 9 }));
  await put(
    path.join(root, 'usr/share/man/man1/runner-warden.1.gz'),
    gzipSync(await readFile(path.join(ROOT, 'packaging/man/runner-warden.1')), { level: 9 }),
  );
  await copy(
    path.join(ROOT, 'packaging/completions/runner-warden.bash'),
    path.join(root, 'usr/share/bash-completion/completions/runner-warden'),
  );
  await copy(path.join(ROOT, 'packaging/completions/_runner-warden'), path.join(root, 'usr/share/zsh/vendor-completions/_runner-warden'));
  // Team policies are the host's configuration: conffiles, kept (or asked about) on upgrade.
  const conffiles: string[] = ['/etc/runner-warden-mirror/config.yml'];
  for (const f of (await readdir(path.join(ROOT, 'policies'))).sort()) {
    if (!f.endsWith('.yaml')) continue;
    await copy(path.join(ROOT, 'policies', f), path.join(root, 'etc/runner-warden/policies', f), 0o600);
    conffiles.push(`/etc/runner-warden/policies/${f}`);
  }
  await chmod(path.join(root, 'etc/runner-warden'), 0o700);
  await chmod(path.join(root, 'etc/runner-warden/policies'), 0o700);
  await copy(path.join(ROOT, 'packaging/debian/lintian-overrides'), path.join(root, 'usr/share/lintian/overrides/runner-warden'));

  const debian = path.join(root, 'DEBIAN');
  await mkdir(debian, { mode: 0o755 });
  const sizeKiB = Number(run('du', ['-sk', '--apparent-size', '--exclude=DEBIAN', root]).split('\t')[0]);
  const control = [
    'Package: runner-warden',
    `Version: ${pkg.version}-1`,
    `Architecture: ${DEB_ARCH}`,
    `Maintainer: ${DEB_MAINTAINER}`,
    `Installed-Size: ${sizeKiB}`,
    // The shipped node: glibc 2.28, libstdc++ (GLIBCXX_3.4.21), libgcc_s, libatomic (objdump -p).
    // e2fsprogs: chattr (the cleanup clears immutable attributes); libcap2-bin: getcap (the
    // integrity check reads file capabilities; without it they are reported unreadable); setpriv
    // and flock are in util-linux, which is essential.
    'Depends: libc6 (>= 2.28), libstdc++6 (>= 5.2), libgcc-s1, libatomic1, e2fsprogs, libcap2-bin',
    // systemd: the unit and systemd-notify; procps: the demo's process listing; acl and attr:
    // setfacl/setfattr strip ACLs and user attributes from the home's recorded directories;
    // bpftool: the integrity check's bpf surface (without it eBPF objects are not checked, and
    // the agent says so); curl: warm images (policy docker.warm) call each job's engine as the
    // runner user through it (without it nothing is warmed, and the agent says how to fix it).
    'Recommends: systemd, procps, acl, attr, bpftool, curl',
    // docker.io with rootlesskit, slirp4netns and uidmap: per-job rootless engines; docker-registry:
    // the image cache's units (runner-warden-mirror.service).
    'Suggests: docker.io, rootlesskit, slirp4netns, uidmap, docker-registry',
    'Section: admin',
    'Priority: optional',
    `Homepage: ${pkg.homepage ?? 'https://github.com/runner-warden/runner-warden'}`,
    'Description: single-use GitHub Actions runner supervisor for clean hosts',
    ' runner-warden is a root agent for self-hosted GitHub Actions runner hosts.',
    ' It registers a single-use (JIT) runner, supervises the runner listener for',
    ' one job, cleans the host, verifies it is clean, then reuses or recycles it.',
    ' .',
    ` This package ships its own Node.js ${node.version} in ${DEB_PREFIX}/node.`,
    '',
  ].join('\n');
  await put(path.join(debian, 'control'), control);
  await put(path.join(debian, 'conffiles'), `${conffiles.join('\n')}\n`);
  await put(path.join(debian, 'postinst'), POSTINST, 0o755);
  await put(path.join(debian, 'prerm'), PRERM, 0o755);
  await put(path.join(debian, 'postrm'), POSTRM, 0o755);
  const sums: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (full !== debian) await walk(full);
      } else if (e.isFile()) {
        sums.push(
          `${createHash('md5')
            .update(await readFile(full))
            .digest('hex')}  ${path.relative(root, full)}`,
        );
      }
    }
  };
  await walk(root);
  await put(path.join(debian, 'md5sums'), `${sums.join('\n')}\n`);
  // Reproducible times inside the archive.
  run('find', [root, '-exec', 'touch', '-h', '-d', `@${epoch}`, '{}', '+']);
  const file = path.join(out, `runner-warden_${pkg.version}-1_${DEB_ARCH}.deb`);
  run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', root, file], { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) } });
  return file;
}

/** Builds every artifact into `out`; returns their paths. */
export async function release(out: string, opts: { deb?: boolean } = {}): Promise<{ tarball: string; deb?: string; sums: string }> {
  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as Pkg;
  const epoch = sourceDateEpoch();
  await mkdir(out, { recursive: true });
  const work = await mkdtemp(path.join(os.tmpdir(), 'rw-release-'));
  await chmod(work, 0o755);
  try {
    const dist = path.join(work, 'dist');
    await buildBundle(dist);
    const tarball = await buildTarball(work, dist, pkg, out, epoch);
    const deb = opts.deb === false ? undefined : await buildDeb(work, dist, pkg, out, epoch);
    const lines: string[] = [];
    for (const f of [tarball, deb]) {
      if (f)
        lines.push(
          `${createHash('sha256')
            .update(await readFile(f))
            .digest('hex')}  ${path.basename(f)}`,
        );
    }
    const sums = path.join(out, 'SHA256SUMS');
    await writeFile(sums, `${lines.join('\n')}\n`);
    return { tarball, ...(deb ? { deb } : {}), sums };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--out');
  const out = path.resolve(i >= 0 && args[i + 1] ? (args[i + 1] as string) : path.join(ROOT, 'release'));
  const r = await release(out, { deb: !args.includes('--no-deb') });
  for (const f of [r.tarball, r.deb, r.sums]) {
    if (f) process.stdout.write(`  ${path.relative(process.cwd(), f)}  ${((await stat(f)).size / 1024 / 1024).toFixed(1)} MiB\n`);
  }
  if (args.includes('--lintian') && r.deb) {
    // lintian exits non-zero on errors; warnings are printed and left to the reader. Its own
    // temporary files (mldbm-elf-*) stay behind in $TMPDIR: give it one that is removed after.
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'rw-lintian-'));
    try {
      execFileSync('lintian', ['--fail-on', 'error,warning', r.deb], { stdio: 'inherit', env: { ...process.env, TMPDIR: tmp } });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
}
