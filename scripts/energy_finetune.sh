#!/usr/bin/env bash
# An energy that ranks noise above data: the shipped model (checkpoints/mebm) fine-tuned with half of the EBM's
# negatives drawn from a replay buffer of persistent data chains (Du & Mordatch 2019), the other half the usual
# revised generator samples; every other setting is the shipped recipe's (scripts/checkpoint.sh, step 2).
#   1. the full method from checkpoints/mebm (all three networks; optimisers fresh), 50 iterations, with
#      --ebm-replay-share 0.5 (32 of the 64 negatives), a buffer of 2,000 tuples restarted from uniform noise
#      with chance 0.05 per draw, 30 data steps per draw (the training data step size and noise);
#   2. its ex-post prior (as scripts/prior.sh: 20 components, seed 0).
# The buffer is not saved in checkpoints: a resumed run starts it afresh from noise (so a resumed run differs
# from an uninterrupted one).
#
# Output: runs/energy_ft/final (the model), runs/energy_ft/final/prior.safetensors and prior.json. Run time on
# one thread of the 2-core CPU machine: about 8 CPU-seconds per iteration (7 CPU-minutes for step 1, measured
# on a busy machine); wall time is longer when the machine is shared. On a GPU add DEVICE=cuda.
#
#   bash scripts/energy_finetune.sh --mnist ../shared/data/mnist.npz
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 0 "$@"
DEV=(); [[ -n ${DEVICE:-} ]] && DEV=(--device "$DEVICE")
LOG=(--eval-every 250 --eval-samples 500 --ckpt-every 25 --sample-every 250)

train runs/energy_ft --variant full --init-from checkpoints/mebm --model.ebm-width 32 --model.ebm-latent-cond-steps 0 \
  --warmup-iters 0 --iters 50 --ebm-replay-share 0.5 --ebm-replay-size 2000 --ebm-replay-reinit 0.05 \
  --ebm-replay-steps 30 "${LOG[@]}" "${DEV[@]}"
step runs/energy_ft/final/prior.safetensors "$PY" -m model.prior --checkpoint runs/energy_ft/final "${DATA[@]}" \
  --components 20 --threads "$THREADS" --out runs/energy_ft/final/prior.safetensors
