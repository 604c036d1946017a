#!/usr/bin/env bash
# Does a task scheduler help a strong assay learner? (issue 24; docs/results/assay-schedulers.md)
# The best assay learner (fsmol-gp: the adaptive deep-kernel GP at 64 support compounds) with
# uniform sampling, greedy, agreement and ATS, 1,000 meta-updates each (the clean learner's
# validation score levels off by then), in three settings: clean training assays; half of the
# training tasks with N(0, 1) noise on their support targets (fsmol-noisy, the reference's
# noise); a quarter of the training assays with their values shuffled among their compounds in
# every episode (task.noisy_sources=0.25, a broken extraction). Seed 0 of every setting first,
# then seeds 1 and 2, shuffled assays first (on seed 0 the only setting where a scheduler moved
# the score). Run from the repository root with ../shared beside it; finished runs are
# reused, so stop and start it at will; experiments/run_and_commit.sh commits them as it goes.
# WORKERS=2 for two processes.
set -euo pipefail
R="--set data.root=../shared/data/fsmol/fsmol_train_valid.csv.gz"
COMMON="--schedulers uniform,greedy,agreement,ats --set train.iterations=1000 --workers ${WORKERS:-1}"
for SEEDS in 1 3; do
  metasched compare --config fsmol-gp $R --set task.noisy_sources=0.25 $COMMON --seeds $SEEDS \
      --out experiments/runs/assay-gp-shuffled
  metasched compare --config fsmol-gp $R $COMMON --seeds $SEEDS --out experiments/runs/assay-gp-clean
  metasched compare --config fsmol-noisy $R $COMMON --seeds $SEEDS --out experiments/runs/assay-gp-noisy
done
