#!/usr/bin/env bash
# The equal-compute study (issue 25; docs/results/equal-compute.md): every method stops at the
# same compute, 1, 3, 10 and 30 times the cost of the preset's 500-update uniform run, counted
# in uniform iterations (each method's cost measured against uniform sampling in one process,
# OUT/costs.json), from the main table's clean warm start; uniform sampling runs with a
# constant and with a cosine-decayed learning rate (decayed to each budget). Validation every
# 100 uniform iterations of compute (100 tasks). Seed 0 of every setting first, then seeds 1
# and 2. Run from the repository root; finished runs are reused and unfinished ones resume,
# so stop and start it at will (experiments/run_and_commit.sh commits as it goes).
# WORKERS=2 for two processes.
set -euo pipefail
WARM="--set train.init_from=experiments/warm-starts/glyphs-pretrain-1shot.pt"
COMMON="--budget 1x,3x,10x,30x --workers ${WORKERS:-1} --set train.val_every=100 --set train.checkpoint_every=100"
BASE=uniform,uniform+cosine,oracle,greedy,agreement,ats,ats-lite
CHEAP=greedy-p4,buffer-p3,amortised,gated-p4
for SEEDS in 1 3; do
  # 1. Per-episode noise: 60% of training tasks with redrawn support labels (the main table).
  metasched compare --config glyphs-noisy $WARM $COMMON --seeds $SEEDS \
      --schedulers $BASE,$CHEAP --out experiments/runs/budget-redraw-0.6
  # 2. Noise with a source: a quarter of the training classes mislabelled as a partner class.
  metasched compare --config glyphs-sourced $WARM $COMMON --seeds $SEEDS \
      --schedulers $BASE,$CHEAP --out experiments/runs/budget-sourced-0.25
  # 3. Real handwriting: the Omniglot background subsets (175 training characters), 60%
  #    redrawn supports, from a clean Omniglot warm start (glyphs-pretrain's schedule).
  metasched compare --config glyphs-noisy --set data.name=omniglot \
      --set data.root=../shared/data/omniglot --pretrain glyphs-pretrain $COMMON --seeds $SEEDS \
      --schedulers $BASE,$CHEAP --out experiments/runs/budget-omniglot-redraw-0.6
  # 4. Assays: the best learner (fsmol-gp) with half of the training tasks' support targets
  #    noised (fsmol-noisy; 8 tasks a meta-batch, so the cheap pools hold 12), to 10x (its
  #    2,000-update uniform run takes about 10 minutes).
  metasched compare --config fsmol-noisy --set data.root=../shared/data/fsmol/fsmol_train_valid.csv.gz \
      --budget 1x,3x,10x --workers ${WORKERS:-1} --seeds $SEEDS \
      --schedulers uniform,uniform+cosine,oracle,greedy,ats,greedy-p12,amortised,gated-p12 \
      --out experiments/runs/budget-assays-noisy
  # 5. Clean tasks, where selection can only cost (a gated scheduler should stay off), and
  #    80% redrawn supports, where it has the most to gain.
  metasched compare --config glyphs-noisy --set task.noise_ratio=0 $WARM $COMMON --seeds $SEEDS \
      --schedulers uniform,uniform+cosine,greedy,agreement,ats,$CHEAP \
      --out experiments/runs/budget-clean
  metasched compare --config glyphs-noisy --set task.noise_ratio=0.8 $WARM $COMMON --seeds $SEEDS \
      --schedulers $BASE,$CHEAP --out experiments/runs/budget-redraw-0.8
done
