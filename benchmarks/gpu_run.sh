#!/usr/bin/env bash
# The device checks in one go (run from the repository root on a GPU machine whose Python has
# torch but not metasched): CUDA tests, the speed benchmark with grouped and loop batching, and
# the pool batching comparison (loop, grouped, vmap), and one torchrun rank against one process.
# Needs the Hershey-Fonts wheel in .whl/ (pip download Hershey-Fonts==2.1.0 --no-deps -d .whl).
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 METASCHED_CACHE=/tmp/metasched-cache
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m pytest tests/test_gpu.py -q -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log"
python3 benchmarks/ats_speed.py --device cuda --rounds 3 --steps 3 2>&1 | tee "$out/gpu_bench_grouped.md"
python3 benchmarks/ats_speed.py --device cuda --batching loop --configs glyphs mini84 \
    --rounds 3 --steps 3 2>&1 | tee "$out/gpu_bench_loop.md"
python3 benchmarks/pool_batching.py --device cuda 2>&1 | tee "$out/gpu_pool_batching.md"
# Issue 13: one rank under torchrun (a group of one over NCCL) against one plain process
python3 benchmarks/ranks_speed.py --nproc 1 --torchrun --rounds 2 --set train.device=cuda \
    2>&1 | tee "$out/gpu_ranks.md"
nvidia-smi --query-gpu=count --format=csv,noheader | head -1 | grep -qv '^1$' && \
    python3 benchmarks/ranks_speed.py --nproc 2 --torchrun --rounds 2 --set train.device=cuda \
    2>&1 | tee "$out/gpu_ranks_2.md"
