#!/usr/bin/env bash
# The captioned model (docs/captions.md): the five image modalities and a caption, trained as the shipped
# five-image model is, then scored by model.caption_eval beside its baseline.
#   1. the MoE VAE with the caption modality (--variant vae --captions; the caption read by READER, below),
#      1,500 iterations, its image networks started from the shipped five-image model (checkpoints/mebm:
#      generator and inference; the caption's decoder and expert fresh), so that the iterations go to the caption;
#   2. the full method from its generator and inference weights, with a fresh EBM 32 channels wide over the
#      images and the caption (--init-skip energy --model.ebm-width 32), 299 iterations (30 data-space and 10
#      latent Langevin steps per iteration, batch 64; the captions' logits revised beside the images);
#   3. the baseline, the MoE VAE with the caption modality at about equal budget: step 1's weights trained on
#      by the MoE ELBO for VAE_EXTRA iterations (1,800: 78-82 % of step 2's CPU time as measured);
#   4. model.caption_eval of 2 and 3 (judges A and B; held-in and held-out wordings; every stage);
#   5. the ex-post prior of 2 (model.prior, 20 components), and with --install the weights, the prior and the
#      training record copied into checkpoints/mebm_captions (the demo's second model).
# Run time, measured on one thread of the 2-core CPU machine with the conv reader (other jobs shared it, load
# average 2-7): step 1 17.8 CPU-minutes, step 2 28, step 3 21.7, the evaluations 4.7 and 2.0 minutes, the prior
# 0.6; 57 minutes of wall time in all with PARALLEL=1. On a GPU add DEVICE=cuda.
#
# Steps 2 and 3 both start from step 1; with PARALLEL=1 they run at the same time (two processes, one thread
# each: on two free cores they finish in about the time of step 2 alone).
#
# Environment (beside lib.sh's): READER (how the caption expert and the EBM's text branch read a caption,
# model.train --text-reader: conv, the default and the bundled model's, or positions), RUN (the output folder,
# default runs/captions_conv, or runs/captions for READER=positions),
# VAE_ITERS, FULL_ITERS, VAE_EXTRA, TEXT_WEIGHT, N_EVAL (below), PARALLEL (1: steps 2 and 3 at once; default 0),
# DEVICE (e.g. cuda).
#
# Output: RUN/{vae,full,vae_equal}/final, RUN/eval/{full,vae_equal}/caption_metrics.md.
#
#   PARALLEL=1 bash scripts/captions.sh --mnist ../shared/data/mnist.npz [--install]
#   READER=positions bash scripts/captions.sh --mnist ../shared/data/mnist.npz   # the reader bundled before
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 1 "$@"
DEV=(); [[ -n ${DEVICE:-} ]] && DEV=(--device "$DEVICE")
LOG=(--eval-every 250 --eval-samples 500 --ckpt-every 100 --sample-every 250)
VAE_ITERS=${VAE_ITERS:-1500}   # iterations of step 1
FULL_ITERS=${FULL_ITERS:-299}  # iterations of step 2 (the full method)
VAE_EXTRA=${VAE_EXTRA:-1800}   # iterations of the baseline (78-82 % of step 2's CPU time as measured)
N_EVAL=${N_EVAL:-1000}         # test tuples per direction and prior samples of the evaluation
TEXT_WEIGHT=${TEXT_WEIGHT:-1}  # the caption's weight in the generator's losses, every step (model.train --text-weight)

READER=${READER:-conv}         # the caption reader (model.train --text-reader)
DEFAULT_RUN=runs/captions_$READER; [[ $READER == positions ]] && DEFAULT_RUN=runs/captions
RUN=${RUN:-$DEFAULT_RUN}       # output folder
PARALLEL=${PARALLEL:-0}        # 1: steps 2 and 3 at the same time
CAP=(--captions --text-reader "$READER" --text-weight "$TEXT_WEIGHT")

train "$RUN/vae" --variant vae "${CAP[@]}" --init-from checkpoints/mebm --init-skip energy --warmup-iters 0 \
  --iters "$VAE_ITERS" "${LOG[@]}" "${DEV[@]}"
full() {
  train "$RUN/full" --variant full "${CAP[@]}" --init-from "$RUN/vae/final" --init-skip energy \
    --model.ebm-width 32 --model.ebm-latent-cond-steps 0 --warmup-iters 0 --iters "$FULL_ITERS" "${LOG[@]}" "${DEV[@]}"
}
baseline() {
  train "$RUN/vae_equal" --variant vae "${CAP[@]}" --init-from "$RUN/vae/final" --warmup-iters 0 \
    --iters "$VAE_EXTRA" "${LOG[@]}" "${DEV[@]}"
}
if [[ $PARALLEL == 1 ]]; then
  full & pid=$!
  baseline
  wait "$pid"
else
  full
  baseline
fi
for name in full vae_equal; do
  step "$RUN/eval/$name/caption_metrics.json" "$PY" -m model.caption_eval \
    --checkpoint "$RUN/$name/final" "${DATA[@]}" --classifier "$JUDGE_A" --classifier-b "$JUDGE_B" \
    --n "$N_EVAL" --n-joint "$N_EVAL" --threads "$THREADS" --quiet --name "$name" "${DEV[@]}" \
    --out "$RUN/eval/$name"
done
step "$RUN/full/final/prior.safetensors" "$PY" -m model.prior --checkpoint "$RUN/full/final" "${DATA[@]}" \
  --components 20 --threads "$THREADS" --out "$RUN/full/final/prior.safetensors" "${DEV[@]}"
install_to "$RUN/full/final" checkpoints/mebm_captions model.safetensors config.json train_config.json \
  prior.safetensors prior.json
