#!/usr/bin/env bash
# The equal-compute study (issue 25; docs/results/equal-compute.md): every method stops at the
# same compute, 1, 3, 10 and 30 times the cost of the preset's 500-update uniform run, measured
# in uniform iterations (costs against uniform sampling in one process, OUT/costs.json), from
# the main table's clean warm start, 3 seeds; uniform sampling runs with a constant and with a
# cosine-decayed learning rate (decayed to each budget). Validation every 100 uniform
# iterations of compute (100 tasks). Run from the repository root; finished runs are reused
# and unfinished ones resume, so stop and start it at will (experiments/run_and_commit.sh
# commits as it goes). WORKERS=2 for two processes.
set -euo pipefail
WARM="--set train.init_from=experiments/warm-starts/glyphs-pretrain-1shot.pt"
COMMON="--seeds 3 --budget 1x,3x,10x,30x --workers ${WORKERS:-1} --set train.val_every=100 --set train.checkpoint_every=100"
METHODS=${METHODS:-uniform,uniform+cosine,oracle,greedy,agreement,ats,ats-lite}
# 1. Per-episode noise: 60% of training tasks with redrawn support labels (the main table).
metasched compare --config glyphs-noisy $WARM $COMMON --schedulers $METHODS \
    --out experiments/runs/budget-redraw-0.6
