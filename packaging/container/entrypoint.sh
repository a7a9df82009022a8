#!/bin/sh
# Entry point of the runner-warden image, started by tini (PID 1), so that runner-warden is PID 1's
# child: tini reaps the orphans a job leaves (the agent then finds and kills what still runs) and
# forwards SIGTERM to the agent alone (no `tini -g`: the listener is in its own process group and
# the agent stops it itself, after the drain).
#
#   runner-warden-entrypoint [runner-warden arguments]     (default: run)
#   runner-warden-entrypoint --render-config TEMPLATE OUT  (render only; used by the tests)
#
# When RUNNER_WARDEN_CONFIG_TEMPLATE names a file (Kubernetes: the ConfigMap's config.yaml), it is
# rendered to RUNNER_WARDEN_CONFIG_OUT (default /etc/runner-warden/config.yaml, mode 0600) with
# each ${NAME} below replaced by the environment variable of that name: the `kubernetes` recycle
# provider needs its own pod's name (downward API) and the API address the kubelet sets, which no
# static file can hold. A placeholder the template uses must be set and well-formed (exit 78).
set -eu

PLACEHOLDERS='POD_NAME POD_NAMESPACE KUBERNETES_SERVICE_HOST KUBERNETES_SERVICE_PORT'

die() { printf 'runner-warden-entrypoint: %s\n' "$*" >&2; exit 78; }

# Each value is checked against what Kubernetes can produce (DNS-1123 names, an IP address or
# host name, a port number), so it cannot change the YAML's structure and is safe in sed.
check_value() {
  case "$1" in
    KUBERNETES_SERVICE_PORT) pattern='*[!0-9]*' ;;
    KUBERNETES_SERVICE_HOST) pattern='*[!0-9A-Za-z.:-]*' ;;
    *) pattern='*[!a-z0-9.-]*' ;;
  esac
  # shellcheck disable=SC2254 # the pattern is meant to be a pattern
  case "$2" in
    '') die "$1 is not set (downward API fieldRef, or the kubelet's service variables)" ;;
    $pattern) die "$1 is not well-formed: $2" ;;
  esac
  [ "${#2}" -le 253 ] || die "$1 is longer than 253 characters"
}

render() {
  tpl=$1
  out=$2
  [ -f "$tpl" ] || die "config template $tpl not found"
  script=
  for name in $PLACEHOLDERS; do
    grep -qF "\${$name}" "$tpl" || continue
    value=$(printenv "$name" || true)
    check_value "$name" "$value"
    script="$script s/\\\${$name}/$value/g;"
  done
  (
    umask 077
    sed -e "$script" "$tpl" > "$out.tmp"
  )
  mv -f "$out.tmp" "$out"
}

if [ "${1:-}" = --render-config ]; then
  [ $# -eq 3 ] || die "usage: --render-config TEMPLATE OUT"
  render "$2" "$3"
  exit 0
fi

if [ -n "${RUNNER_WARDEN_CONFIG_TEMPLATE:-}" ]; then
  render "$RUNNER_WARDEN_CONFIG_TEMPLATE" "${RUNNER_WARDEN_CONFIG_OUT:-/etc/runner-warden/config.yaml}"
fi
[ $# -gt 0 ] || set -- run

# The whole-host integrity baseline of THIS container, taken once, at its first start, before
# the agent runs (so before any job). The one the image build recorded describes the build's
# container: every container the runtime starts has other mounts (/etc/hosts, /etc/hostname,
# /etc/resolv.conf, its cgroup paths, a bind-mounted config), tini as PID 1 and a fresh /etc/mtab,
# and the agent would quarantine itself at its first check. Once only: a container started again
# (`docker start`, whose filesystem keeps what a job left) must compare against its first start,
# not accept the job's changes; the marker sits beside the baseline in the agent's state.
if [ "$1" = run ]; then
  config=${RUNNER_WARDEN_CONFIG:-/etc/runner-warden/config.yaml}
  prev=
  for a in "$@"; do
    [ "$prev" = --config ] && config=$a
    case "$a" in --config=*) config=${a#--config=} ;; esac
    prev=$a
  done
  marker=/var/lib/runner-warden/integrity/container-baseline-taken
  if [ ! -e "$marker" ]; then
    /usr/local/bin/runner-warden baseline --config "$config" >&2 || exit $?
    : > "$marker"
  fi
fi
exec /usr/local/bin/runner-warden "$@"
