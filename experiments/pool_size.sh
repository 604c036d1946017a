#!/usr/bin/env bash
# Does a bigger pool help ATS? (issue 13; docs/results.md, "Bigger pools"). On R ranks a pool
# of R·10 candidates costs about what 10 cost on one process (docs/benchmarks.md, "Scaling over
# ranks"), so pools of 10, 20 and 40 are the settings that equal wall time buys on 1, 2 and 4
# processes. Noisy glyphs (the main table's setting and warm start), 3 seeds, the same number
# of meta-updates; uniform, the oracle (trains on clean tasks only) and uniform-reward (uniform
# plus the clean reward tasks ATS sees) once, as references. Finished runs are reused.
set -euo pipefail
I="--set train.init_from=experiments/warm-starts/glyphs-pretrain-1shot.pt"
for P in 10 20 40; do
  METHODS=ats
  [ "$P" = 10 ] && METHODS=uniform,oracle,uniform-reward,ats
  metasched compare --config glyphs-noisy $I --set scheduler.pool_size=$P --seeds 3 \
      --workers ${WORKERS:-1} --schedulers $METHODS --out experiments/runs/glyphs-pool-$P
done
