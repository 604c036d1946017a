#!/usr/bin/env bash
# Runs a study (any command, e.g. `bash experiments/fsmol_sweep.sh`) and commits its finished
# runs every INTERVAL seconds (default 1200) while it runs, and once when it ends, so that a
# session that ends mid-study loses at most the runs in progress. UNFINISHED=1 also commits
# unfinished runs' last.pt (small models only), so that the study resumes on another machine.
#   nohup bash experiments/run_and_commit.sh bash experiments/fsmol_sweep.sh > study.log 2>&1 &
# Stop it with `pkill -TERM -f run_and_commit.sh`: the runs save, and what finished is committed.
set -uo pipefail
cd "$(dirname "$0")/.."
flags=()
[ "${UNFINISHED:-0}" = 1 ] && flags=(--unfinished)
# The study runs in a process group of its own: a stop (TERM, INT or HUP to this script) sends
# TERM to all of it, so that the study's script ends at once and starts nothing more, and its
# runs save and stop (as on `kill`); the commits below wait for the last of them. (Not INT: a
# background job's commands ignore it.)
setsid "$@" &
study=$!
trap 'kill -TERM -- -"$study" 2>/dev/null' TERM INT HUP
last=$(date +%s)
while kill -0 -- -"$study" 2>/dev/null; do
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
