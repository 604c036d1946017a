#!/usr/bin/env bash
# Runs a study (any command, e.g. `bash experiments/fsmol_sweep.sh`) and commits its finished
# runs every INTERVAL seconds (default 1200) while it runs, and once when it ends, so that a
# session that ends mid-study loses at most the runs in progress. UNFINISHED=1 also commits
# unfinished runs' last.pt (small models only), so that the study resumes on another machine.
#   nohup bash experiments/run_and_commit.sh bash experiments/fsmol_sweep.sh > study.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
flags=()
[ "${UNFINISHED:-0}" = 1 ] && flags=(--unfinished)
"$@" &
study=$!
last=$(date +%s)
while kill -0 "$study" 2>/dev/null; do
  sleep 10
  if [ $(( $(date +%s) - last )) -ge "${INTERVAL:-1200}" ]; then
    bash experiments/commit_finished_runs.sh "${flags[@]}" || echo "commit failed; will retry"
    last=$(date +%s)
  fi
done
wait "$study"
status=$?
bash experiments/commit_finished_runs.sh "${flags[@]}" || echo "commit failed"
exit "$status"
