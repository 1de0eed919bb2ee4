#!/usr/bin/env bash
# An energy that reads whether the modalities agree: the shipped EBM (checkpoints/mebm) fine-tuned with the pairwise
# head (--model.ebm-head pairwise: its trunks and MLP head kept, a fresh agreement term added) and mismatched tuples
# in its loss (--ebm-mismatch-share), the generator and the inference model frozen; every other setting is step 3 of
# scripts/checkpoint.sh (ranked replay chains). Then its ex-post prior, its energy check, and joint samples from
# N(0, I) with 10 and 30 EBM latent steps (1,000 each) and conditional samples (200 test tuples per observed modality,
# the shipped model's beside them) scored by both judges. The shipped model's joint samples at these lengths:
# CHECKPOINT=checkpoints/mebm NAME=mebm LENGTHS="10 30" bash scripts/ebm_latent_length.sh.
#   INIT (the model to start from, default checkpoints/mebm; e.g. runs/agree_pre, written by `python -m
#   scripts.agreement_probe --mnist ../shared/data/mnist.npz --iters 10 --whole-heads pairwise --save runs/agree_pre`:
#   the shipped EBM with the pairwise head taught agreement by the mismatch loss alone, 600 iterations), NAME (default
#   agree), SHARE (mismatched tuples per data tuple, default 1.0), LR (the EBM's learning rate, default 1e-4), ITERS
#   (default 400), HEAD (the energy head, default pairwise; concat with SHARE=0 is the control: the shipped EBM's
#   own head, no mismatched tuples, the same further iterations) choose the run; everything goes under runs/NAME,
#   runs/dumps and runs/eval.
#
# Run time on one thread of the 2-core CPU machine (two runs at once): 8-9 s per iteration; the evaluation about 12
# minutes.
#   NAME=agree_a bash scripts/energy_agreement.sh --mnist ../shared/data/mnist.npz               # from the shipped EBM
#   INIT=runs/agree_pre NAME=agree_c ITERS=300 bash scripts/energy_agreement.sh --mnist ../shared/data/mnist.npz
#   HEAD=concat SHARE=0 NAME=agree_control bash scripts/energy_agreement.sh --mnist ../shared/data/mnist.npz
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 0 "$@"
DEV=(); [[ -n ${DEVICE:-} ]] && DEV=(--device "$DEVICE")
NAME=${NAME:-agree}
OUT=runs/$NAME

train "$OUT" --variant full --init-from "${INIT:-checkpoints/mebm}" --model.ebm-width 32 \
  --model.ebm-head "${HEAD:-pairwise}" --model.ebm-latent-cond-steps 0 --warmup-iters 0 --iters "${ITERS:-400}" \
  --lr-generator 0 --lr-inference 0 --seed 1 --ebm-replay-share 0.5 --ebm-replay-size 10000 \
  --ebm-replay-reinit 0.05 --ebm-replay-steps 60 --ebm-replay-loss rank --energy-l2 0.01 \
  --ebm-mismatch-share "${SHARE:-1.0}" --lr-energy "${LR:-1e-4}" --eval-every 0 --ckpt-every 50 --sample-every 1000 \
  "${DEV[@]}"
step "$OUT/final/prior.safetensors" "$PY" -m model.prior --checkpoint "$OUT/final" "${DATA[@]}" --components 20 \
  --threads "$THREADS" --out "$OUT/final/prior.safetensors"
step "runs/eval/energy_$NAME/energy.json" "$PY" -m model.energy_check --checkpoint "$OUT/final" "${DATA[@]}" \
  --n 300 --noise-steps 10,30,100,300 --threads "$THREADS" --quiet --out "runs/eval/energy_$NAME"
for k in ${LENGTHS:-10 30}; do
  dump "jlen_${NAME}_$k" "$OUT/final" --n-cond 0 --n-joint 1000 --n-diverse 0 --ebm-latent-steps "$k"
  judge "jlen_${NAME}_$k" 0 1000
done
for ck in mebm "$NAME"; do   # conditional samples, 200 test tuples per observed modality, beside the shipped model's
  src=$OUT/final; [[ $ck == mebm ]] && src=checkpoints/mebm
  dump "cond_$ck" "$src" --n-cond 200 --n-joint 0 --n-diverse 0
  judge "cond_$ck" 200 0
done
