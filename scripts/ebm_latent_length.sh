#!/usr/bin/env bash
# Joint samples from N(0, I) against the length of the EBM latent chain, for docs/results.md ("Longer EBM latent
# chains from N(0, I)"): the shipped checkpoint, 1,000 prior samples from N(0, I) (seed 0) for each length in
# LENGTHS (default 10 30 100 300 steps; the shipped chain is 10), every other chain setting as shipped (step size
# and noise 0.3, then 30 data steps), each dump scored by both judges (joint coherence, coherent-digit entropy,
# digit distribution, FD on 1,000 samples against 1,000 real test tuples).
# CHECKPOINT=DIR (default checkpoints/mebm) and NAME (default mebm) choose the model and the output names.
# Output: runs/dumps/jlen_NAME_K.npz and runs/eval/jlen_NAME_K_{A,B}/metrics.json. Run time on one thread of the
# 2-core CPU machine: about 3.5 CPU-ms per sample per EBM latent step, so 300 steps take about 18 CPU-minutes.
#
#   bash scripts/ebm_latent_length.sh --mnist ../shared/data/mnist.npz
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 0 "$@"
CHECKPOINT=${CHECKPOINT:-checkpoints/mebm}
NAME=${NAME:-mebm}

for k in ${LENGTHS:-10 30 100 300}; do
  dump "jlen_${NAME}_$k" "$CHECKPOINT" --n-cond 0 --n-joint 1000 --n-diverse 0 --ebm-latent-steps "$k"
  judge "jlen_${NAME}_$k" 0 1000
done
