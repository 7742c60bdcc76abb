# Sourced (from the checkout's root) by the scripts that start servers: gives them a temporary
# directory, $work, and a list, $pids, to add every process they start to; on exit, by error
# or Ctrl-C too, each listed process is killed (by PID, nothing else) and $work removed.
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
