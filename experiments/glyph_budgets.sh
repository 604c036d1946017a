#!/usr/bin/env bash
# The limited-budget analysis on glyphs (issue 11; docs/results.md, "Limited budgets on glyphs"):
# the paper's budget recipe (supplement D.1: no noise, pool 6, τ 1) with 16, 32, 48 and 64
# training classes, uniform against ATS, 3 seeds, from a random initialisation. Finished runs
# are kept in experiments/runs and reused. WORKERS=2 for two processes.
set -euo pipefail
for C in 16 64 32 48; do
  metasched compare --config paper/glyphs-budget-$C --schedulers uniform,ats --seeds 3 \
      --workers ${WORKERS:-1} --out experiments/runs/glyphs-budget-$C
done
