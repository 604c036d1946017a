#!/usr/bin/env bash
# Commits every finished run (a directory with summary.json) under experiments/runs, with the
# comparison tables beside them; checkpoints stay out (experiments/runs/.gitignore). Used while
# a long sweep runs, so that a session's end loses only unfinished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
added=()
for summary in experiments/runs/*/*/summary.json; do
  run=$(dirname "$summary")
  case "$run" in */stale/*) continue;; esac
  [ -n "$(git status --porcelain -- "$run")" ] || continue  # committed already
  git add "$run" && added+=("$(basename "$(dirname "$run")")/$(basename "$run")")
done
for table in experiments/runs/*/results.{csv,md,png}; do
  [ -e "$table" ] && git add "$table"
done
git diff --cached --quiet -- experiments/runs || git commit -qm "Finished runs: ${added[*]}" -- experiments/runs
