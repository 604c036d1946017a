#!/usr/bin/env bash
# Commits every finished run (a directory with summary.json) under experiments/runs, and the
# checkpoints of unfinished ones when asked (--unfinished: last.pt and best.pt, so that a study
# resumes on another machine; only runs whose last.pt is at most UNFINISHED_MAX_MB, default 2:
# Conv4 and scheduler states, not the 9 MB assay models of a study running beside), with the
# comparison tables beside them. Records are committed compressed
# (metrics.jsonl.gz; metasched reads either, and a resumed run restores metrics.jsonl from it);
# a finished run's checkpoints stay out. Used while a long study runs, so that a session's end
# loses only the iterations since the last call. Holds .git/metasched-commit.lock while it
# stages and commits, so that it never interleaves with another commit made under that lock.
set -euo pipefail
cd "$(dirname "$0")/.."
unfinished=false
[ "${1:-}" = "--unfinished" ] && unfinished=true
exec 9>.git/metasched-commit.lock
flock 9
added=()
for run in experiments/runs/*/*/; do
  run=${run%/}
  case "$run" in */stale/*|*/stale) continue;; esac
  [ -f "$run/config.yaml" ] || continue
  finished=false
  [ -f "$run/summary.json" ] && finished=true
  $finished || $unfinished || continue
  if ! $finished; then  # resumable elsewhere only with its checkpoint, and a small one
    [ -f "$run/last.pt" ] || continue
    [ "$(stat -c %s "$run/last.pt")" -le $(( ${UNFINISHED_MAX_MB:-2} * 1048576 )) ] || continue
  fi
  # A running run's checkpoint is taken before its records: the records then reach at least
  # the checkpoint's iteration (a resume drops those beyond it), never stop short of it.
  checkpoint="" best=""
  if ! $finished; then  # best.pt too: a resume tests the best-so-far model at its milestones
    checkpoint=$(git hash-object -w "$run/last.pt")
    [ -f "$run/best.pt" ] && best=$(git hash-object -w "$run/best.pt")
  fi
  if [ -f "$run/metrics.jsonl" ]; then
    gzip -cn "$run/metrics.jsonl" > "$run/.metrics.jsonl.gz.part" && \
      mv "$run/.metrics.jsonl.gz.part" "$run/metrics.jsonl.gz"
  fi
  files=()
  for f in config.yaml provenance.json summary.json test_tasks.csv metrics.jsonl.gz; do
    [ -f "$run/$f" ] && files+=("$run/$f")
  done
  if $finished; then  # committed while unfinished; a finished run needs neither
    for f in last.pt best.pt; do
      if git ls-files --error-unmatch "$run/$f" >/dev/null 2>&1; then git rm -q --cached "$run/$f"; fi
    done
  fi
  if [ -z "$(git status --porcelain --ignored -- "${files[@]}")" ] && \
     { $finished || [ "$(git rev-parse -q --verify ":$run/last.pt")" = "$checkpoint" ]; } && \
     { [ -z "$best" ] || [ "$(git rev-parse -q --verify ":$run/best.pt")" = "$best" ]; }; then
    continue  # committed already
  fi
  git add -f "${files[@]}"
  $finished || git update-index --add --cacheinfo "100644,$checkpoint,$run/last.pt"
  [ -z "$best" ] || git update-index --add --cacheinfo "100644,$best,$run/best.pt"
  added+=("$(basename "$(dirname "$run")")/$(basename "$run")$($finished || echo ' (unfinished)')")
done
for table in experiments/runs/*/{results,budgets}.{csv,md} experiments/runs/*/{results.png,cost.png,costs.json}; do
  [ -e "$table" ] && git add "$table"
done
git diff --cached --quiet -- experiments/runs && exit 0
# Commit the index as staged: a pathspec (`git commit -- experiments/runs`) would re-add the
# checkpoints of finished runs removed above, since they stay on disk. Anything else staged
# would go in with it, so refuse then.
if ! git diff --cached --quiet -- . ':!experiments/runs'; then
  echo "commit_finished_runs: files outside experiments/runs are staged; commit them first" >&2
  exit 1
fi
git commit -qm "Runs: ${added[*]:-tables}"
