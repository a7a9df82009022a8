#!/usr/bin/env bash
# Provisions a runner-warden AMI (runner-warden.pkr.hcl runs it as root on Ubuntu 24.04 or
# Debian 12). Every input comes from the environment; see the template's variables:
#   RUNNER_VERSION RUNNER_SHA256 NODE_VERSION RUNNER_WARDEN_TARBALL GITHUB_URL GITHUB_ORG
#   RUNNER_LABELS TEAM RECYCLE_PROVIDER LIFECYCLE_HOOK_NAME INSTALL_DOCKER RUNNER_SUDO
# Nothing is started and nothing is registered: the unit is enabled for the first boot only.
# `provision.sh --print-config` checks the inputs and prints the host config, changing nothing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

die() { printf 'provision.sh: %s\n' "$*" >&2; exit 1; }
need() { [ -n "${!1:-}" ] || die "$1 is required"; }
for v in RUNNER_VERSION RUNNER_SHA256 RUNNER_WARDEN_TARBALL GITHUB_URL GITHUB_ORG TEAM RECYCLE_PROVIDER; do need "$v"; done
NODE_VERSION=${NODE_VERSION:-26}
RUNNER_LABELS=${RUNNER_LABELS:-self-hosted,linux}
INSTALL_DOCKER=${INSTALL_DOCKER:-true}
RUNNER_SUDO=${RUNNER_SUDO:-false}
LIFECYCLE_HOOK_NAME=${LIFECYCLE_HOOK_NAME:-}

RUNNER_USER=runner
RUNNER_UID=1001
RUNNER_ROOT=/opt/actions-runner
CONFIG=/etc/runner-warden/config.yaml

# Values that end up in YAML are checked here so that the file cannot be broken by a variable.
[[ "$RUNNER_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "RUNNER_VERSION must be x.y.z"
[[ "$RUNNER_SHA256" =~ ^[0-9a-f]{64}$ ]] || die "RUNNER_SHA256 must be 64 hex digits (from the runner's release notes)"
[[ "$GITHUB_URL" =~ ^https?://[A-Za-z0-9.:-]+(/[A-Za-z0-9._/-]*)?$ ]] || die "GITHUB_URL is not a plain http(s) URL"
[[ "$GITHUB_ORG" =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,38}$ ]] || die "GITHUB_ORG is not an organisation name"
[[ "$TEAM" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "TEAM is not a team name"
[[ "$RUNNER_LABELS" =~ ^[A-Za-z0-9._:/+-]+(,[A-Za-z0-9._:/+-]+)*$ ]] || die "RUNNER_LABELS must be comma-separated labels"
[[ "$NODE_VERSION" =~ ^[0-9]+(\.[0-9]+\.[0-9]+)?$ ]] || die "NODE_VERSION must be a major (20) or x.y.z"
case "$RECYCLE_PROVIDER" in shutdown|aws-asg) ;; *) die "RECYCLE_PROVIDER must be shutdown or aws-asg" ;; esac
[[ "$LIFECYCLE_HOOK_NAME" =~ ^[A-Za-z0-9_/-]{0,255}$ ]] || die "LIFECYCLE_HOOK_NAME must be 1-255 of A-Z a-z 0-9 _ / -"
[ -z "$LIFECYCLE_HOOK_NAME" ] || [ "$RECYCLE_PROVIDER" = aws-asg ] || die "LIFECYCLE_HOOK_NAME needs RECYCLE_PROVIDER=aws-asg"

case "$(uname -m)" in
  x86_64) RUNNER_ARCH=x64; NODE_ARCH=x64 ;;
  aarch64) RUNNER_ARCH=arm64; NODE_ARCH=arm64 ;;
  *) die "unsupported architecture $(uname -m)" ;;
esac

# The host config, from the inputs checked above (printed alone with --print-config, which
# the packaging tests use to validate it).
render_config() {
  local labels
  labels=$(printf '%s' "$RUNNER_LABELS" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')
  {
    echo "# Written by packaging/packer/provision.sh. The token is delivered at boot, never baked."
    echo "github:"
    echo "  url: $GITHUB_URL"
    echo "  org: $GITHUB_ORG"
    echo "  token:"
    echo "    file: /etc/runner-warden/token"
    echo "runner:"
    echo "  root: $RUNNER_ROOT"
    echo "  user: $RUNNER_USER"
    echo "  name: \"{hostname}-{seq}\""
    echo "  labels: [$labels]"
    echo "team: $TEAM"
    echo "interruptions:"
    echo "  imds: true          # spot notices and Auto Scaling lifecycle hooks drain the host"
    echo "recycle:"
    if [ "$RECYCLE_PROVIDER" = aws-asg ]; then
      echo "  provider: aws-asg"
      if [ -n "$LIFECYCLE_HOOK_NAME" ]; then
        echo "  lifecycleHookName: $LIFECYCLE_HOOK_NAME   # completed (CONTINUE) once the host is drained"
      fi
      echo "  fallback:"
      echo "    - provider: shutdown"
      echo "      command: [systemctl, poweroff]"
    else
      echo "  provider: shutdown  # the launch template must say: shutdown behaviour terminate"
      echo "  command: [systemctl, poweroff]"
    fi
  }
}
if [ "${1:-}" = --print-config ]; then render_config; exit 0; fi

apt-get update
apt-get install -y --no-install-recommends ca-certificates curl git jq tar gzip xz-utils iptables e2fsprogs cron at
if [ "$INSTALL_DOCKER" = true ]; then
  apt-get install -y --no-install-recommends docker.io
  systemctl enable docker.service
fi

# --- Node.js (the distributions ship 18; runner-warden needs >= 20.19) -------------------------
# The official binary, checked against the release's SHASUMS256.txt (fetched over TLS from the
# same origin; verify its signature too if your pipeline has the Node.js release keys).
node_dir=latest-v${NODE_VERSION}.x
[[ "$NODE_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] && node_dir=v$NODE_VERSION
tmp=$(mktemp -d)
curl -fsSL "https://nodejs.org/dist/$node_dir/SHASUMS256.txt" -o "$tmp/SHASUMS256.txt"
node_tar=$(awk -v a="linux-$NODE_ARCH.tar.xz" '$2 ~ a"$" {print $2}' "$tmp/SHASUMS256.txt" | head -n1)
[ -n "$node_tar" ] || die "no Node.js linux-$NODE_ARCH tarball in $node_dir"
curl -fsSL "https://nodejs.org/dist/$node_dir/$node_tar" -o "$tmp/$node_tar"
(cd "$tmp" && grep " $node_tar\$" SHASUMS256.txt | sha256sum -c -)
tar -xJf "$tmp/$node_tar" -C /usr/local --strip-components=1 --no-same-owner
node --version

# --- The runner user and the runner ------------------------------------------------------------
if ! id "$RUNNER_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --uid "$RUNNER_UID" "$RUNNER_USER"
fi
if [ "$INSTALL_DOCKER" = true ]; then
  # The docker group is root-equivalent: with it, only the throwaway VM contains a job.
  usermod -aG docker "$RUNNER_USER"
fi
if [ "$RUNNER_SUDO" = true ]; then
  printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$RUNNER_USER" > /etc/sudoers.d/runner
  chmod 0440 /etc/sudoers.d/runner
  visudo -cf /etc/sudoers.d/runner
fi

runner_tar="actions-runner-linux-$RUNNER_ARCH-$RUNNER_VERSION.tar.gz"
curl -fsSL "https://github.com/actions/runner/releases/download/v$RUNNER_VERSION/$runner_tar" -o "$tmp/$runner_tar"
echo "$RUNNER_SHA256  $tmp/$runner_tar" | sha256sum -c -
install -d -m 0755 "$RUNNER_ROOT"
tar -xzf "$tmp/$runner_tar" -C "$RUNNER_ROOT" --no-same-owner
"$RUNNER_ROOT/bin/installdependencies.sh"
chown -R "$RUNNER_USER:$RUNNER_USER" "$RUNNER_ROOT"

# --- runner-warden -----------------------------------------------------------------------------
mkdir "$tmp/rw"
tar -xzf "$RUNNER_WARDEN_TARBALL" -C "$tmp/rw"
src="$tmp/rw"
[ -f "$src/package.json" ] || src=$(find "$tmp/rw" -mindepth 1 -maxdepth 1 -type d | head -n1)
bash "$src/packaging/install.sh" --from "$src"

render_config > "$CONFIG.tmp"
chmod 0600 "$CONFIG.tmp"
mv "$CONFIG.tmp" "$CONFIG"

runner-warden validate "$CONFIG" /etc/runner-warden/policies/*.yaml
# The runner user's home and the runner installation are final now: record them as the baseline
# every cleanup restores and verifies against.
runner-warden baseline --config "$CONFIG"

# --- IMDS for root only ------------------------------------------------------------------------
# The instance role (and, with aws-asg, the right to terminate instances of the group) must not
# reach a job: the runner user's own connections to the metadata service are refused. Containers
# are kept out by the IMDSv2 hop limit of 1. A job with root (sudo, the docker group) can undo
# this; then only the single-use VM and a minimal role contain it.
cat > /etc/systemd/system/runner-warden-imds-guard.service <<'UNIT'
[Unit]
Description=Refuse the runner user's connections to the EC2 metadata service
Before=runner-warden.service
After=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/iptables -w -I OUTPUT -d 169.254.169.254/32 -m owner --uid-owner runner -j REJECT
ExecStart=-/usr/sbin/ip6tables -w -I OUTPUT -d fd00:ec2::254/128 -m owner --uid-owner runner -j REJECT

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 /etc/systemd/system/runner-warden-imds-guard.service
systemctl daemon-reload
systemctl enable runner-warden-imds-guard.service runner-warden.service

# --- Leave nothing of the build in the image ---------------------------------------------------
rm -rf "$tmp" "$RUNNER_WARDEN_TARBALL"
apt-get clean
rm -rf /var/lib/apt/lists/*
# Each instance gets its own machine id (journald, D-Bus) at first boot.
truncate -s 0 /etc/machine-id
