/**
 * The texts of the simulated runner's shell scripts. Each mirrors the documented behaviour of the
 * real file in actions/runner `src/Misc/layoutroot/` (docs/runner-contract.md §8, §6); the
 * .NET dependency checks are left out.
 */

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * A `bin/` wrapper: `exec`s node on a bundled simulator main (bin/sim/*.mjs), so the wrapper's pid
 * becomes the node process. RUNNER_SIM_ROOT tells the main its root; the main removes it before it
 * spawns anything.
 * bash rather than sh: dash drops environment entries whose names are not shell identifiers
 * (`#x=1`, ` A =b` from `.env`), while the real listener hands them to the worker unchanged.
 */
export function binWrapper(nodePath: string, main: string, root: string, simEnv: Record<string, string> = {}): string {
  // defaults only: a value already in the environment wins
  const defaults = Object.entries(simEnv)
    .filter(([k]) => /^RUNNER_SIM_[A-Z0-9_]+$/.test(k))
    .map(([k, v]) => `: "\${${k}:=${v.replace(/["\\$`]/g, '')}}"\nexport ${k}\n`)
    .join('');
  return `#!/bin/bash
# Simulated runner binary (runner-warden's simulator). Do not edit: installSimulatedRunner writes it.
RUNNER_SIM_ROOT=${q(root)}
export RUNNER_SIM_ROOT
${defaults}exec ${q(nodePath)} ${q(main)} "$@"
`;
}

const RESOLVE_DIR = `SOURCE="\${BASH_SOURCE[0]}"
while [ -h "$SOURCE" ]; do # resolve $SOURCE until the file is no longer a symlink
    DIR="$( cd -P "$( dirname "$SOURCE" )" >/dev/null 2>&1 && pwd )"
    SOURCE="$(readlink "$SOURCE")"
    [[ $SOURCE != /* ]] && SOURCE="$DIR/$SOURCE"
done
DIR="$( cd -P "$( dirname "$SOURCE" )" >/dev/null 2>&1 && pwd )"`;

/** run.sh: loops over run-helper.sh while it exits 2 (§2.3). */
export const RUN_SH = `#!/bin/bash

${RESOLVE_DIR}

run() {
    # run the helper process which keep the listener alive
    while :;
    do
        cp -f "$DIR"/run-helper.sh.template "$DIR"/run-helper.sh
        "$DIR"/run-helper.sh $*
        returnCode=$?
        if [[ $returnCode -eq 2 ]]; then
            echo "Restarting runner..."
        elif [[ "$ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE" == "1" && $returnCode -eq 7 ]]; then
            echo "Exiting runner..."
            exit "$returnCode"
        else
            echo "Exiting runner..."
            exit 0
        fi
    done
}

runWithManualTrap() {
    # Set job control
    set -m

    trap 'kill -INT -$PID' INT TERM

    # run the helper process which keep the listener alive
    while :;
    do
        cp -f "$DIR"/run-helper.sh.template "$DIR"/run-helper.sh
        "$DIR"/run-helper.sh $* &
        PID=$!
        wait $PID
        returnCode=$?
        if [[ $returnCode -eq 2 ]]; then
            echo "Restarting runner..."
        elif [[ "$ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE" == "1" && $returnCode -eq 7 ]]; then
            echo "Exiting runner..."
            exit "$returnCode"
        else
            echo "Exiting runner..."
            # Unregister signal handling before exit
            trap - INT TERM
            # wait for last parts to be logged
            wait $PID
            exit $returnCode
        fi
    done
}

function updateCerts() {
    local sudo_prefix=""
    local user_id=\`id -u\`

    if [ $user_id -ne 0 ]; then
        if [[ ! -x "$(command -v sudo)" ]]; then
            echo "Warning: failed to update certificate store: sudo is required but not found"
            return 1
        else
            sudo_prefix="sudo"
        fi
    fi

    if [[ -x "$(command -v update-ca-certificates)" ]]; then
        eval $sudo_prefix "update-ca-certificates"
    elif [[ -x "$(command -v update-ca-trust)" ]]; then
        eval $sudo_prefix "update-ca-trust"
    else
        echo "Warning: failed to update certificate store: update-ca-certificates or update-ca-trust not found. This can happen if you're using a different runner base image."
        return 1
    fi
}

if [[ ! -z "$RUNNER_UPDATE_CA_CERTS" ]]; then
    updateCerts
fi

if [[ -z "$RUNNER_MANUALLY_TRAP_SIG" ]]; then
    run $*
else
    runWithManualTrap $*
fi
`;

function waitForUpdate(message: string): string {
  return `    echo "${message}"
    for i in {0..30}; do
        if test -f "$updateFile"; then
            echo "Update finished successfully."
            rm "$updateFile"
            break
        fi
        "$DIR"/safe_sleep.sh 1
    done
    exit 2`;
}

/** run-helper.sh.template: runs the listener once and maps its code (§2.2). */
export const RUN_HELPER_TEMPLATE = `#!/bin/bash

# Validate not sudo
user_id=\`id -u\`
if [ $user_id -eq 0 -a -z "$RUNNER_ALLOW_RUNASROOT" ]; then
    echo "Must not run interactively with sudo"
    exit 1
fi

# Run
shopt -s nocasematch

${RESOLVE_DIR}

# Wait for docker to start
if [ ! -z "$RUNNER_WAIT_FOR_DOCKER_IN_SECONDS" ]; then
    if [ "$RUNNER_WAIT_FOR_DOCKER_IN_SECONDS" -gt 0 ]; then
        echo "Waiting for docker to be ready."
        for i in $(seq "$RUNNER_WAIT_FOR_DOCKER_IN_SECONDS"); do
            if docker ps > /dev/null 2>&1; then
                echo "Docker is ready."
                break
            fi
            "$DIR"/safe_sleep.sh 1
        done
    fi
fi

updateFile="update.finished"
"$DIR"/bin/Runner.Listener run $*

returnCode=$?
if [[ $returnCode == 0 ]]; then
    echo "Runner listener exit with 0 return code, stop the service, no retry needed."
    exit 0
elif [[ "$ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE" == "1" && $returnCode -eq 7 ]]; then
    echo "Runner listener exit with deprecated version exit code: \${returnCode}."
    exit "$returnCode"
elif [[ $returnCode == 1 ]]; then
    echo "Runner listener exit with terminated error, stop the service, no retry needed."
    exit 0
elif [[ $returnCode == 2 ]]; then
    echo "Runner listener exit with retryable error, re-launch runner in 5 seconds."
    "$DIR"/safe_sleep.sh 5
    exit 2
elif [[ $returnCode == 3 ]]; then
    # Wait for 30 seconds or for flag file to exists for the runner update process finish
${waitForUpdate('Runner listener exit because of updating, re-launch runner after successful update')}
elif [[ $returnCode == 4 ]]; then
    # Wait for 30 seconds or for flag file to exists for the ephemeral runner update process finish
${waitForUpdate('Runner listener exit because of updating, re-launch runner after successful update')}
elif [[ $returnCode == 5 ]]; then
    echo "Runner listener exit with Session Conflict error, stop the service, no retry needed."
    exit 0
else
    echo "Exiting with unknown error code: \${returnCode}"
    exit 0
fi
`;

/** config.sh: refuses root, sources env.sh, runs `Runner.Listener configure|remove` (§1.3). */
export const CONFIG_SH = `#!/bin/bash

user_id=\`id -u\`

# we want to snapshot the environment of the config user
if [ $user_id -eq 0 -a -z "$RUNNER_ALLOW_RUNASROOT" ]; then
    echo "Must not run with sudo"
    exit 1
fi

# The real script checks the .NET dependencies (ldd, libicu) here; the simulator has none.

# Change directory to the script root directory
# https://stackoverflow.com/questions/59895/getting-the-source-directory-of-a-bash-script-from-within
SOURCE="\${BASH_SOURCE[0]}"
while [ -h "$SOURCE" ]; do # resolve $SOURCE until the file is no longer a symlink
  DIR="$( cd -P "$( dirname "$SOURCE" )" && pwd )"
  SOURCE="$(readlink "$SOURCE")"
  [[ $SOURCE != /* ]] && SOURCE="$DIR/$SOURCE" # if $SOURCE was a relative symlink, we need to resolve it relative to the path where the symlink file was located
done
RUNNER_ROOT="$( cd -P "$( dirname "$SOURCE" )" && pwd )"
cd "$RUNNER_ROOT"

source ./env.sh

shopt -s nocasematch
if [[ "$1" == "remove" ]]; then
    ./bin/Runner.Listener "$@"
else
    ./bin/Runner.Listener configure "$@"
fi
`;

/** env.sh: writes `.path` and appends a fixed list of variables to `.env` (§1.3). */
export const ENV_SH = `#!/bin/bash

varCheckList=(
    'LANG'
    'JAVA_HOME'
    'ANT_HOME'
    'M2_HOME'
    'ANDROID_HOME'
    'ANDROID_SDK_ROOT'
    'GRADLE_HOME'
    'NVM_BIN'
    'NVM_PATH'
    'LD_LIBRARY_PATH'
    'PERL5LIB'
    )

envContents=""

if [ -f ".env" ]; then
    envContents=\`cat .env\`
else
    touch .env
fi

function writeVar()
{
    checkVar="$1"
    checkDelim="\${1}="
    if test "\${envContents#*$checkDelim}" = "$envContents"
    then
        if [ ! -z "\${!checkVar}" ]; then
            echo "\${checkVar}=\${!checkVar}">>.env
        fi
    fi
}

echo $PATH>.path

for var_name in \${varCheckList[@]}
do
    writeVar "\${var_name}"
done
`;

/** safe_sleep.sh: sleep if available, else a busy wait. */
export const SAFE_SLEEP_SH = `#!/bin/bash

# try to use sleep if available
if [ -x "$(command -v sleep)" ]; then
  sleep "$1"
  exit 0
fi

# try to use ping if available
if [ -x "$(command -v ping)" ]; then
  ping -c $(( $1 + 1 )) 127.0.0.1 > /dev/null
  exit 0
fi

# fallback to busy wait
SECONDS=0
while [[ $SECONDS -lt $1 ]]; do
  :
done
`;

/**
 * svc.sh: the real one installs a systemd unit (as root) and writes `.service`. The simulator
 * only records the unit name in `.service` so that `config.sh remove` sees a service
 * (`Uninstall service first`); it never touches systemd.
 */
export const SVC_SH = `#!/bin/bash

SVC_CMD=$1
RUNNER_ROOT=\`pwd\`

user_id=\`id -u\`
if [ $user_id -ne 0 ]; then
    echo "Must run as sudo"
    exit 1
fi

if [ ! -f "$RUNNER_ROOT/.runner" ]; then
    echo "Must configure first. Run ./config.sh"
    exit 1
fi

SVC_NAME="actions.runner.simulated.$(sed -n 's/.*"agentName": *"\\([^"]*\\)".*/\\1/p' "$RUNNER_ROOT/.runner" | head -n1).service"

case $SVC_CMD in
    "install")
        echo "Creating launch runner in $SVC_NAME (simulated: no systemd unit is written)"
        echo "$SVC_NAME" > "$RUNNER_ROOT/.service"
        ;;
    "uninstall")
        rm -f "$RUNNER_ROOT/.service"
        echo "Removed $SVC_NAME (simulated)"
        ;;
    "start"|"stop"|"status")
        echo "$SVC_CMD: simulated runner services are not managed by systemd"
        ;;
    *)
        echo "Usage: ./svc.sh [install, start, stop, status, uninstall]"
        exit 1
        ;;
esac
`;
