#!/usr/bin/env bash
# The energy check and the coherence of one checkpoint, for docs/results.md ("An energy that means data-like"):
#   1. python -m model.energy_check: 300 test tuples, seed 0 (real tuples, joint samples from the ex-post prior,
#      conditionals from one observed modality, uniform noise, data chains from noise at 10, 30 and 100 steps);
#   2. a dump of 200 test tuples per single observed modality (1,000 conditionals) and 1,000 prior samples from
#      N(0, I); a dump of 1,000 prior samples from the ex-post prior beside the weights; seed 0;
#   3. both dumps scored by both judges (conditional coherence, fix and break rates, joint coherence, FD on
#      1,000 samples against 1,000 real test tuples).
# CHECKPOINT=DIR (default checkpoints/mebm) and NAME (default mebm) choose the model and the output names;
# NOISE_STEPS (default 10,30,100) the lengths of the data chains from noise.
# Output: runs/eval/energy_NAME (energy.json, energy.md), runs/dumps/eNAME{,_gmm}.npz,
# runs/eval/eNAME{,_gmm}_{A,B}/metrics.json. Run time on one thread of the 2-core CPU machine, shared (load
# average 10-15): step 1 about 7 wall-minutes (1.9 CPU-minutes), the dumps 13.5 and 9 wall-minutes, each
# scoring under a wall-minute.
#
#   CHECKPOINT=runs/energy_ft/final NAME=energy_ft bash scripts/energy_eval.sh --mnist ../shared/data/mnist.npz
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 0 "$@"
CHECKPOINT=${CHECKPOINT:-checkpoints/mebm}
NAME=${NAME:-mebm}

step "runs/eval/energy_$NAME/energy.json" "$PY" -m model.energy_check --checkpoint "$CHECKPOINT" "${DATA[@]}" \
  --n 300 --seed 0 --noise-steps "${NOISE_STEPS:-10,30,100}" --threads "$THREADS" --quiet --out "runs/eval/energy_$NAME"
dump "e$NAME" "$CHECKPOINT" --n-cond 200 --n-joint 1000 --n-diverse 0
dump "e${NAME}_gmm" "$CHECKPOINT" --n-cond 0 --n-joint 1000 --n-diverse 0 --prior ex-post
judge "e$NAME" 200 1000
judge "e${NAME}_gmm" 0 1000
