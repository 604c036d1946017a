#!/usr/bin/env bash
# The FS-Mol comparisons of issue 10 (docs/results.md, "Drug activity regression on FS-Mol").
# Run from the repository root with ../shared beside it. Finished runs are reused (compare
# checks each stored config and code version), so the sweep can be stopped with Ctrl-C and
# started again; it runs the paper's setting first, then the others. WORKERS=1 for one process.
set -euo pipefail
R="--set data.root=../shared/data/fsmol/fsmol_train_valid.csv.gz"
OUT=experiments/runs
ALL=uniform,greedy,spl,focal,daml,paml,bass,agreement,ats,forest,oracle
CORE=uniform,greedy,spl,ats,forest
metasched compare --config paper/fsmol-noisy $R --seeds 3 --workers ${WORKERS:-2} --schedulers $ALL \
    --out $OUT/fsmol-16-noisy
for K in 64 16; do
  metasched compare --config paper/fsmol-noisy $R --set task.assays.support=$K --set task.noise_ratio=0 \
      --seeds 3 --workers ${WORKERS:-2} --schedulers $CORE --out $OUT/fsmol-$K-clean
  if [ "$K" = 64 ]; then
    metasched compare --config paper/fsmol-noisy $R --set task.assays.support=$K \
        --seeds 3 --workers ${WORKERS:-2} --schedulers $CORE,oracle --out $OUT/fsmol-$K-noisy
  fi
done
# Does per-task standardisation help? (clean, 16 compounds)
metasched compare --config paper/fsmol-noisy $R --set task.noise_ratio=0 \
    --set task.assays.standardise=false --seeds 3 --workers ${WORKERS:-2} --schedulers uniform,ats \
    --out $OUT/fsmol-16-raw
# A one-seed probe: ATS with the glyph scheduler settings (lr 1e-3, temperature 0.1).
metasched compare --config paper/fsmol-noisy $R --set scheduler.ats.lr=0.001 \
    --set scheduler.ats.temperature=0.1 --seeds 1 --workers ${WORKERS:-2} --schedulers uniform,ats \
    --out $OUT/fsmol-16-noisy-ats-glyph-settings
