#!/usr/bin/env bash
# An energy that ranks noise above data: the shipped model (checkpoints/mebm, or INIT) fine-tuned with the full
# method and its shipped settings (optimisers fresh), except that a share of the EBM's negatives is drawn from a
# replay buffer of persistent data chains (Du & Mordatch 2019; the buffer is not saved in checkpoints: a resumed
# run starts it afresh from noise); then its ex-post prior (20 components) and the energy check and coherence of
# scripts/energy_eval.sh (both judges). The first fine-tune of docs/results.md is
# NAME=energy_ft ITERS=50 SIZE=2000.
# Environment (each with its default):
#   INIT=checkpoints/mebm  the model to start from (e.g. an earlier run's runs/NAME/final)
#   NAME=replay       runs/NAME (the model: runs/NAME/final) and the names of scripts/energy_eval.sh's outputs
#   ITERS=400         training iterations
#   SHARE=0.5         --ebm-replay-share: the share of the 64 negatives from the buffer
#   SIZE=10000        --ebm-replay-size: tuples in the buffer
#   REINIT=0.05       --ebm-replay-reinit: chance that a drawn entry restarts from uniform noise
#   RSTEPS=30         --ebm-replay-steps: data steps per draw
#   L2=0.01           --energy-l2: the penalty on squared energies
#   MINUTES=          --max-minutes: a wall-clock budget that stops (and saves) the run early (none by default)
#   DEVICE=           --device for the training, the prior, the dumps and the energy check (default: auto)
#   SKIP=             --init-skip: parts that start from fresh (seeded) weights, e.g. SKIP=energy for an EBM trained
#                     from the start on the shipped generator
#   FREEZE=0          1: --lr-generator 0 --lr-inference 0, so the generator and the inference model keep INIT's
#                     weights and only the EBM learns (the proposals stay the shipped ones)
#   LOSS=ml           --ebm-replay-loss: ml (the chains replace SHARE of the revised samples as negatives) or rank
#                     (every revised sample stays a negative; SHARE x 64 chains more enter by a ranking term against
#                     the data, which raises a chain only while it is not above the data)
#   SEED=0            --seed: the fresh weights (with SKIP), the batches and the chains
#   STEP=             --data-step-size and --model.data-step-size: the data revision's step size, the same in
#                     training (revision and replay chains) and at test time (default: INIT's training value, 1.0)
# Run time: on one NVIDIA H200 with four of these at once, 0.65 s per iteration (RSTEPS=60: 1.0 s) and about two
# minutes for the prior, the check and the scoring (16 CPU cores, THREADS=3); on one thread of the 2-core CPU
# machine about 8 CPU-seconds per iteration.
#
#   NAME=replay_s25 SHARE=0.25 bash scripts/energy_replay.sh --mnist ../shared/data/mnist.npz
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 0 "$@"
NAME=${NAME:-replay}
DEV=(); [[ -n ${DEVICE:-} ]] && DEV=(--device "$DEVICE")
BUDGET=(); [[ -n ${MINUTES:-} ]] && BUDGET=(--max-minutes "$MINUTES")
EXTRA=(); [[ -n ${SKIP:-} ]] && EXTRA+=(--init-skip "$SKIP")
[[ ${FREEZE:-0} == 1 ]] && EXTRA+=(--lr-generator 0 --lr-inference 0)
[[ -n ${LOSS:-} ]] && EXTRA+=(--ebm-replay-loss "$LOSS")
[[ -n ${SEED:-} ]] && EXTRA+=(--seed "$SEED")
[[ -n ${STEP:-} ]] && EXTRA+=(--data-step-size "$STEP" --model.data-step-size "$STEP")
LOG=(--eval-every 0 --ckpt-every 50 --sample-every 1000)

train "runs/$NAME" --variant full --init-from "${INIT:-checkpoints/mebm}" --model.ebm-width 32 --model.ebm-latent-cond-steps 0 \
  --warmup-iters 0 --iters "${ITERS:-400}" --ebm-replay-share "${SHARE:-0.5}" --ebm-replay-size "${SIZE:-10000}" \
  --ebm-replay-reinit "${REINIT:-0.05}" --ebm-replay-steps "${RSTEPS:-30}" --energy-l2 "${L2:-0.01}" "${LOG[@]}" \
  "${BUDGET[@]}" "${EXTRA[@]}" "${DEV[@]}"
step "runs/$NAME/final/prior.safetensors" "$PY" -m model.prior --checkpoint "runs/$NAME/final" "${DATA[@]}" \
  --components 20 --threads "$THREADS" "${DEV[@]}" --out "runs/$NAME/final/prior.safetensors"
CHECKPOINT="runs/$NAME/final" NAME="$NAME" bash scripts/energy_eval.sh ${MNIST:+--mnist "$MNIST"} \
  $([[ $DRY_RUN == 1 ]] && echo --dry-run)
