#!/usr/bin/env bash
# Installs what the test suite uses from Debian's packages, then the npm dependencies.
# Idempotent: a tool already present is not installed again. Needs root (the tests run as root:
# they create throwaway runner users, cgroups and a private dockerd).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have dockerd   || need+=(docker.io)
have busybox   || need+=(busybox-static)
have promtool  || need+=(prometheus)
have crontab   || need+=(cron)
have at        || need+=(at)
have chattr    || need+=(e2fsprogs)
have pkill     || need+=(procps)
have ipcs      || need+=(util-linux)
have git       || need+=(git)
have aws       || need+=(awscli)
have skopeo    || need+=(skopeo)
have python3   || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends keeps CI fast; each of these works without its recommends.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --engine-strict --no-audit --no-fund
fi
