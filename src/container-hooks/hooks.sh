#!/bin/sh
# The file ACTIONS_RUNNER_CONTAINER_HOOKS names (the runner accepts .js, .sh or .ps1): runs the
# bundled hooks when the package was built, the TypeScript through tsx otherwise (tests, demo).
here=$(dirname "$(readlink -f "$0")")
root=$(dirname "$(dirname "$here")")
if [ -f "$root/dist/container-hooks.js" ]; then exec node "$root/dist/container-hooks.js"; fi
exec node --import "$root/node_modules/tsx/dist/loader.mjs" "$here/main.ts"
