#!/usr/bin/env bash
# An energy that ranks a coherent completion of real observed data above an incoherent one: the shipped model
# (checkpoints/mebm) fine-tuned with half of the EBM's negatives drawn as conditional samples of the batch's own
# tuples, the other half the usual revised generator samples; every other setting is the shipped recipe's
# (scripts/checkpoint.sh, step 2).
#   1. the full method from checkpoints/mebm (all three networks; optimisers fresh), ITERS iterations (default 100),
#      with --ebm-cond-share 0.5 (32 of the 64 negatives): per tuple one observed modality, z ~ q(z | x_m), the
#      model's sampling chains (latent revision, data revision with x_m clamped to the data);
#   2. its ex-post prior (as scripts/prior.sh: 20 components, seed 0).
#
# Output: runs/energy_cond_ft/final (the model), runs/energy_cond_ft/final/prior.safetensors and prior.json.
# Run time on one thread of the shared 2-core CPU machine (load average 3-4): about 10 s per iteration (100
# iterations: 16.3 wall-minutes, 16.1 CPU-minutes); step 2 under a minute. On a GPU add DEVICE=cuda.
#
#   bash scripts/energy_cond_finetune.sh --mnist ../shared/data/mnist.npz
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 0 "$@"
DEV=(); [[ -n ${DEVICE:-} ]] && DEV=(--device "$DEVICE")
LOG=(--eval-every 250 --eval-samples 500 --ckpt-every 10 --sample-every 250)

train runs/energy_cond_ft --variant full --init-from checkpoints/mebm --model.ebm-width 32 \
  --model.ebm-latent-cond-steps 0 --warmup-iters 0 --iters "${ITERS:-100}" --ebm-cond-share 0.5 "${LOG[@]}" "${DEV[@]}"
step runs/energy_cond_ft/final/prior.safetensors "$PY" -m model.prior --checkpoint runs/energy_cond_ft/final \
  "${DATA[@]}" --components 20 --threads "$THREADS" --out runs/energy_cond_ft/final/prior.safetensors
