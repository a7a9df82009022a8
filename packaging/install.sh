#!/usr/bin/env bash
# Installs runner-warden on a runner host or into an image's staging root.
#
#   packaging/install.sh [--from DIR|TARBALL] [--prefix DIR] [--root DIR] [--no-systemd]
#                        [--enable] [--skip-build]
#
# From a checkout (the default: the tree this script is in) or a source tarball (`git archive`,
# with its package-lock.json), it builds the agent in a staging copy (npm ci, npm run build,
# then drops node_modules and src/: the bundle in dist/ carries every dependency); from a
# release tarball (`npm run release`: a built dist/ and no src/) it installs that bundle as built,
# then swaps it into PREFIX (default /opt/runner-warden), root-owned and not writable by anyone
# else: the agent runs as root and a job must never be able to change its code. It also
#   - links /usr/local/bin/runner-warden to PREFIX/bin/runner-warden.js;
#   - creates /etc/runner-warden (0700) with the example config (0600) and the example team
#     policies when there are none; existing files are never touched;
#   - creates /var/lib/runner-warden (0711: the runner user may traverse it to the hook scripts);
#   - installs the systemd unit (unless --no-systemd), with PREFIX substituted.
# It starts nothing unless --enable is given: then the unit is enabled and, on a live system,
# started. Running it again upgrades in place and keeps the config (restart the unit to pick up
# the new code: `systemctl restart runner-warden` drains first).
#
# Options:
#   --from DIR|TARBALL  source tree, release tarball or .tar/.tar.gz/.tgz (default: this
#                       script's checkout)
#   --prefix DIR        install directory (default /opt/runner-warden)
#   --root DIR          install under DIR as if it were / (image builds, tests); nothing is
#                       enabled on the running system and systemctl is not asked to reload
#   --no-systemd        do not install the unit (containers)
#   --enable            enable the unit (and start it when --root is not given)
#   --skip-build        copy the tree as it is, node_modules and dist included, without npm
#                       (tests; images that built the tree in an earlier stage)
set -euo pipefail

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
note() { printf 'install.sh: %s\n' "$*"; }

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
FROM="$SCRIPT_DIR/.."
PREFIX=/opt/runner-warden
ROOT=
SYSTEMD=1
ENABLE=0
BUILD=1
UNIT_NAME=runner-warden.service
# Written into PREFIX so that a later run only ever replaces a directory this script created.
MARKER=.runner-warden-install

while [ $# -gt 0 ]; do
  case "$1" in
    --from) [ $# -ge 2 ] || die "--from needs a value"; FROM=$2; shift 2 ;;
    --from=*) FROM=${1#*=}; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --root) [ $# -ge 2 ] || die "--root needs a value"; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#*=}; shift ;;
    --no-systemd) SYSTEMD=0; shift ;;
    --enable) ENABLE=1; shift ;;
    --skip-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# PREFIX is substituted into the unit with sed and removed/replaced as a whole: keep it to a
# plain absolute path, and never a system directory.
case "$PREFIX" in
  /*) ;;
  *) die "--prefix must be an absolute path, got '$PREFIX'" ;;
esac
[[ "$PREFIX" =~ ^(/[A-Za-z0-9._-]+)+$ ]] || die "--prefix must be a plain path of letters, digits, '.', '_', '-', got '$PREFIX'"
case "$PREFIX" in
  /bin|/boot|/dev|/etc|/home|/lib|/lib64|/opt|/proc|/root|/run|/sbin|/srv|/sys|/tmp|/usr|/usr/*bin|/usr/lib|/usr/local|/var|/var/lib)
    die "--prefix $PREFIX is a system directory; use a directory of its own such as /opt/runner-warden" ;;
esac
if [ -n "$ROOT" ]; then
  case "$ROOT" in /*) ;; *) die "--root must be an absolute path, got '$ROOT'" ;; esac
  mkdir -p -- "$ROOT"
  ROOT=$(cd -- "$ROOT" && pwd -P)
  [ "$ROOT" = / ] && ROOT=
fi
if [ "$ENABLE" = 1 ] && [ "$SYSTEMD" = 0 ]; then die "--enable needs the unit: drop --no-systemd"; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/runner-warden-install.XXXXXX")
cleanup() { rm -rf -- "$WORK"; [ -z "${NEW:-}" ] || rm -rf -- "$NEW"; }
trap cleanup EXIT

# --- Source ----------------------------------------------------------------------------------
if [ -f "$FROM" ]; then
  mkdir "$WORK/src"
  tar -xf "$FROM" -C "$WORK/src" || die "cannot unpack $FROM"
  SRC="$WORK/src"
  # `git archive --prefix=runner-warden/` puts everything in one top directory.
  if [ ! -f "$SRC/package.json" ]; then
    tops=("$SRC"/*)
    [ ${#tops[@]} -eq 1 ] && [ -d "${tops[0]}" ] && SRC=${tops[0]}
  fi
elif [ -d "$FROM" ]; then
  SRC=$(cd -- "$FROM" && pwd -P)
else
  die "--from $FROM is neither a directory nor a tarball"
fi
grep -q '"name": *"runner-warden"' "$SRC/package.json" 2>/dev/null || die "$SRC is not a runner-warden source tree (no package.json naming runner-warden)"
# A release (npm run release): the bundle is built and there are no sources to build from.
if [ ! -d "$SRC/src" ] && [ -f "$SRC/dist/runner-warden.mjs" ]; then BUILD=0; fi

DEST="$ROOT$PREFIX"
if [ -e "$DEST" ] && [ "$(cd -- "$DEST" && pwd -P)" = "$SRC" ]; then
  die "$SRC is the installation itself; pass --from with a checkout or a tarball"
fi
if [ -e "$DEST" ] && [ ! -e "$DEST/$MARKER" ] && [ -n "$(ls -A -- "$DEST")" ]; then
  die "$DEST exists, is not empty and was not created by this script; refusing to replace it"
fi

# --- Staging copy and build --------------------------------------------------------------------
mkdir -p -- "$(dirname -- "$DEST")"
NEW="$DEST.installing"
rm -rf -- "$NEW"
mkdir -m 0755 -- "$NEW"
# What the agent needs at run time and to build; tests, benchmarks and VCS data stay out. The
# release tarball's own layout: config.example.yaml, systemd, man, completions at its top.
include=(package.json package-lock.json tsconfig.json tsconfig.build.json bin src scripts policies packaging README.md ARCHITECTURE.md LICENSE
  config.example.yaml systemd man completions)
[ "$BUILD" = 1 ] || include+=(node_modules dist)
for entry in "${include[@]}"; do
  [ -e "$SRC/$entry" ] && cp -a -- "$SRC/$entry" "$NEW/"
done
[ -f "$NEW/bin/runner-warden.js" ] || die "$SRC has no bin/runner-warden.js"

if [ "$BUILD" = 1 ]; then
  command -v npm >/dev/null || die "npm not found: install Node.js (>= 20.19; the newest LTS is best) first"
  note "building in $NEW (npm ci, npm run build)"
  (
    cd -- "$NEW"
    npm ci --no-audit --no-fund
    npm run build
  ) || die "build failed"
  [ -f "$NEW/dist/runner-warden.mjs" ] || die "the build produced no dist/runner-warden.mjs"
  # The bundle carries every dependency: the sources and node_modules are not installed.
  rm -rf -- "$NEW/node_modules" "$NEW/src" "$NEW/scripts" "$NEW/tsconfig.json" "$NEW/tsconfig.build.json"
fi
printf 'installed %s from %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$FROM" > "$NEW/$MARKER"

# Root-owned and writable by root only: the runner user (and so any job) must not be able to
# change the code a root daemon runs.
if [ "$(id -u)" = 0 ]; then chown -R 0:0 -- "$NEW"; fi
chmod -R go-w -- "$NEW"
chmod 0755 -- "$NEW" "$NEW/bin/runner-warden.js"

# Swap the new tree in; the old one goes only once the new one is in place.
if [ -e "$DEST" ]; then
  rm -rf -- "$DEST.old"
  mv -- "$DEST" "$DEST.old"
  mv -- "$NEW" "$DEST"
  rm -rf -- "$DEST.old"
else
  mv -- "$NEW" "$DEST"
fi
NEW=
note "installed $PREFIX${ROOT:+ under $ROOT}"

mkdir -p -- "$ROOT/usr/local/bin"
ln -sfn -- "$PREFIX/bin/runner-warden.js" "$ROOT/usr/local/bin/runner-warden"

# --- Configuration and state -------------------------------------------------------------------
install -d -m 0755 -- "$ROOT/etc"
install -d -m 0700 -- "$ROOT/etc/runner-warden"
chmod 0700 -- "$ROOT/etc/runner-warden"
example=$DEST/packaging/config.example.yaml
[ -f "$example" ] || example=$DEST/config.example.yaml
if [ ! -e "$ROOT/etc/runner-warden/config.yaml" ] && [ ! -e "$ROOT/etc/runner-warden/config.json" ]; then
  install -m 0600 -- "$example" "$ROOT/etc/runner-warden/config.yaml"
  note "wrote the example config /etc/runner-warden/config.yaml: edit it, then run runner-warden validate"
fi
if [ ! -e "$ROOT/etc/runner-warden/policies" ]; then
  install -d -m 0700 -- "$ROOT/etc/runner-warden/policies"
  for p in "$DEST"/policies/*.yaml; do
    install -m 0600 -- "$p" "$ROOT/etc/runner-warden/policies/"
  done
  note "installed the example team policies in /etc/runner-warden/policies"
fi
install -d -m 0755 -- "$ROOT/var" "$ROOT/var/lib"
install -d -m 0711 -- "$ROOT/var/lib/runner-warden"
chmod 0711 -- "$ROOT/var/lib/runner-warden"

# --- systemd -----------------------------------------------------------------------------------
if [ "$SYSTEMD" = 1 ]; then
  unit_dir="$ROOT/etc/systemd/system"
  install -d -m 0755 -- "$unit_dir"
  unit=$DEST/packaging/systemd/$UNIT_NAME
  [ -f "$unit" ] || unit=$DEST/systemd/$UNIT_NAME
  sed "s#^ExecStart=/usr/bin/runner-warden #ExecStart=$PREFIX/bin/runner-warden.js #" "$unit" > "$unit_dir/$UNIT_NAME.tmp"
  chmod 0644 -- "$unit_dir/$UNIT_NAME.tmp"
  mv -- "$unit_dir/$UNIT_NAME.tmp" "$unit_dir/$UNIT_NAME"
  live=0
  if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then live=1; fi
  [ "$live" = 0 ] || systemctl daemon-reload
  if [ "$ENABLE" = 1 ]; then
    if [ "$live" = 1 ]; then
      systemctl enable --now "$UNIT_NAME"
      note "enabled and started $UNIT_NAME"
    else
      # Offline (image build, staging root): the same symlink `systemctl enable` makes.
      install -d -m 0755 -- "$unit_dir/multi-user.target.wants"
      ln -sfn -- "/etc/systemd/system/$UNIT_NAME" "$unit_dir/multi-user.target.wants/$UNIT_NAME"
      note "enabled $UNIT_NAME (starts at the next boot)"
    fi
  elif [ "$live" = 1 ] && systemctl is-active --quiet "$UNIT_NAME"; then
    note "$UNIT_NAME is running the previous version: systemctl restart $UNIT_NAME (it drains first)"
  fi
fi

if [ -z "$ROOT" ]; then
  if ! command -v node >/dev/null; then
    note "warning: node is not on PATH; the unit runs $PREFIX/bin/runner-warden.js with /usr/bin/env node (Node.js >= 20.19)"
  fi
fi
