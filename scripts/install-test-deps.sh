#!/usr/bin/env bash
# Installs what the test suite uses from Debian's packages, then the npm dependencies.
# Idempotent: a tool already present is not installed again. Needs root (the tests run as root:
# they create throwaway runner users, cgroups and a private dockerd).
set -euo pipefail
cd "$(dirname "$0")/.."

# A tool counts as present only when its Debian package is installed. `command -v` alone is not
# enough: root's PATH may hold shims (pyenv, asdf) that the runner user never sees, and the tests
# run these tools as a throwaway runner user whose PATH is the system one.
# Each line: Debian package, then the binary the runner user will run (checked after installing).
packages=(
  "docker.io        /usr/bin/docker"
  "busybox-static   /bin/busybox"
  "prometheus       /usr/bin/promtool"
  "cron             /usr/bin/crontab"
  "at               /usr/bin/at"
  "e2fsprogs        /usr/bin/chattr"
  "acl              /usr/bin/setfacl"
  "attr             /usr/bin/setfattr"
  "procps           /usr/bin/pkill"
  "util-linux       /usr/bin/ipcs"
  "git              /usr/bin/git"
  "awscli           /usr/bin/aws"
  "skopeo           /usr/bin/skopeo"
  "python3          /usr/bin/python3"
  "openssh-client   /usr/bin/ssh-keygen"
  "iptables         /usr/sbin/iptables-save"
  "iproute2         /usr/sbin/ip"
  "openssl          /usr/bin/openssl"
  "ca-certificates  /usr/sbin/update-ca-certificates"
  "systemd          /usr/bin/systemctl"
  "rootlesskit      /usr/bin/rootlesskit"
  "slirp4netns      /usr/bin/slirp4netns"
  "uidmap           /usr/bin/newuidmap"
  "docker-registry  /usr/bin/docker-registry"
  "sudo             /usr/bin/sudo"
  "bpftool          /usr/sbin/bpftool"
)
# One dpkg-query for the whole list (it honours DPKG_ADMINDIR, which the test of this script uses
# to play a fresh machine); a package dpkg has never heard of is simply absent from its answer.
names=()
for line in "${packages[@]}"; do read -r pkg bin <<<"$line"; names+=("$pkg"); done
present=" $({ dpkg-query -W -f='${Package}=${Status}\n' "${names[@]}" 2>/dev/null || true; } | sed -n 's/=install ok installed$//p' | tr '\n' ' ') "
need=()
for pkg in "${names[@]}"; do
  [[ "$present" == *" $pkg "* ]] || need+=("$pkg")
done
if [ "${1:-}" = "--list-missing" ]; then
  # Prints what would be installed and exits: lets a fresh root or CI image be checked without root.
  [ ${#need[@]} -eq 0 ] || printf '%s\n' "${need[@]}"
  exit 0
fi
# kubectl is not in Debian bookworm (kubernetes-client 1.20 crashes on `config set-credentials`);
# the credential tests use it when a runner user can run it from the system PATH.
if ! PATH=/usr/local/bin:/usr/bin:/bin command -v kubectl >/dev/null 2>&1; then
  echo "note: no kubectl on the system PATH; the kubeconfig credential cases will be skipped" >&2
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt (unattended-upgrades on a fresh VM) instead of failing at once.
  lock=(-o DPkg::Lock::Timeout=300)
  apt-get "${lock[@]}" update -qq
  # --no-install-recommends keeps CI fast; each of these works without its recommends.
  apt-get "${lock[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Executable by an unprivileged user (nobody, no supplementary groups), as the throwaway runner
# user needs it: the mode bits, ACLs and every parent directory count, not root's view.
runnable() { setpriv --reuid=65534 --regid=65534 --clear-groups -- test -x "$1"; }
for line in "${packages[@]}"; do
  read -r pkg bin <<<"$line"
  runnable "$bin" || { echo "$pkg is installed but $bin is not executable by an unprivileged user" >&2; exit 1; }
done
# --debian-only: the Debian part alone (a fresh root without Node, as in the debootstrap check).
if [ "${1:-}" = "--debian-only" ]; then exit 0; fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --engine-strict --no-audit --no-fund
fi
