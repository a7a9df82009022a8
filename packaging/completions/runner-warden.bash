# bash completion for runner-warden                                  -*- shell-script -*-
_runner_warden() {
  local cur prev cmd
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  local commands="run validate cleanup baseline status journal drain demo version help"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
    return
  fi
  cmd=${COMP_WORDS[1]}
  case "$prev" in
    --config|--token-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --policy-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    --kind) COMPREPLY=($(compgen -W "host policy" -- "$cur")); return ;;
    --log-level) COMPREPLY=($(compgen -W "trace debug info warn error fatal" -- "$cur")); return ;;
    --url|-n|--jobs) return ;;
  esac
  local opts
  case "$cmd" in
    run) opts="--config --log-level" ;;
    validate) opts="--kind --policy-dir --quiet --print-effective" ;;
    cleanup) opts="--config --dry-run --json" ;;
    baseline) opts="--config --home --install" ;;
    status) opts="--config --json --url" ;;
    journal) opts="--config --json --all -n" ;;
    drain) opts="--config --url --token-file" ;;
    demo) opts="--jobs --keep" ;;
    *) opts="" ;;
  esac
  if [[ "$cur" == -* ]] || [ "$cmd" != validate ]; then
    COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -F _runner_warden runner-warden
