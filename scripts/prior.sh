#!/usr/bin/env bash
# The ex-post prior shipped beside the model, checkpoints/mebm/prior.safetensors: a 20-component
# full-covariance Gaussian mixture fitted by EM (100 iterations, seed 0) to one z ~ q(z | x_1..x_5) per
# training tuple (60,000). Joint samples start from it instead of N(0, I).
#
# CHECKPOINT=DIR chooses the model (default checkpoints/mebm; runs/mebm/full/final after scripts/checkpoint.sh).
# Output: runs/mebm/prior.safetensors and prior.json; --install copies both into checkpoints/mebm.
# Run time: 0.8 minutes on the 2-core CPU machine (prior.json: "minutes").
#
#   bash scripts/prior.sh --mnist ../shared/data/mnist.npz [--install]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 1 "$@"
CHECKPOINT=${CHECKPOINT:-checkpoints/mebm}

[[ $DRY_RUN == 1 ]] || mkdir -p runs/mebm
step runs/mebm/prior.safetensors "$PY" -m model.prior --checkpoint "$CHECKPOINT" "${DATA[@]}" --components 20 \
  --threads "$THREADS" --out runs/mebm/prior.safetensors
install_to runs/mebm checkpoints/mebm prior.safetensors prior.json
