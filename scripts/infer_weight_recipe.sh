#!/usr/bin/env bash
# The whole recipe of scripts/checkpoint.sh with the inference experts not fit to the revised latents, against the
# MoE VAE continued from the same warm-up. At the scale of scripts/proposal_gap.sh (a 4,000-iteration VAE) the
# experts' fit of the revised latents is what cost the conditional proposals 1-2 points; here at the shipped scale:
#   1. the MoE VAE (--variant vae), 13,409 iterations, seed 0 (step 1 of scripts/checkpoint.sh, without its logging);
#   2. continued from it, seed 0, 299 iterations each (every setting of step 2 of checkpoint.sh unless named):
#        infer0       the full method with --revision-infer-weight 0 (a fresh EBM 32 channels wide, as step 2)
#        infer0_rank  the same with step 3's ranked replay chains added to the EBM's training in this one step
#                     (--ebm-replay-share 0.5 ... --ebm-replay-loss rank --energy-l2 0.01): a two-step recipe
#        vae_more     the control: the MoE VAE continued for ITERS_CONTROL iterations (default 3,700; about the
#                     CPU time of infer0_rank, more than infer0's)
#   3. each sampled (1,000 test tuples per observed modality, 1,000 joint samples from N(0, I), seed 0), scored by
#      both judges, and compared, paired, with 95 % bootstrap intervals (scripts.stage_gains): the final stage and
#      the proposals of each variant against the control's proposals (its best stage for conditionals), and
#      infer0_rank against infer0 and against the shipped checkpoints/mebm (sampled and scored the same way); the
#      energy check (model.energy_check, 300 test tuples) of infer0_rank.
#   VARIANTS (default "infer0 infer0_rank vae_more"): run a subset, e.g. one per core.
# Output: runs/ri0/*, runs/dumps/ri0_*.npz, runs/eval/ri0_*.
# Run time on the 2-core CPU machine (measured): step 1 60 wall-minutes with THREADS=2 (119.2 CPU-minutes); then
# the three variants side by side on one thread each (load average about 3): infer0 19.7 CPU-minutes (29 wall),
# infer0_rank 31.8 (45 wall), vae_more 31.4 (46 wall); sampling and scoring 6-10 wall-minutes each.
#
#   THREADS=2 bash scripts/infer_weight_recipe.sh --mnist ../shared/data/mnist.npz
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 0 "$@"
DEV=(); [[ -n ${DEVICE:-} ]] && DEV=(--device "$DEVICE")
LOG=(--eval-every 0 --ckpt-every 100 --sample-every 100000)
VAE=runs/ri0/vae
REPLAY=(--ebm-replay-share 0.5 --ebm-replay-size 10000 --ebm-replay-reinit 0.05 --ebm-replay-steps 60
        --ebm-replay-loss rank --energy-l2 0.01)

train "$VAE" --variant vae --iters 13409 --seed 0 --eval-every 0 --ckpt-every 500 --sample-every 100000 "${DEV[@]}"
for v in ${VARIANTS:-infer0 infer0_rank vae_more}; do
  iters=299
  case $v in
    infer0) flags=(--variant full --revision-infer-weight 0) ;;
    infer0_rank) flags=(--variant full --revision-infer-weight 0 "${REPLAY[@]}") ;;
    vae_more) flags=(--variant vae); iters=${ITERS_CONTROL:-3700} ;;
    *) echo "infer_weight_recipe.sh: unknown variant '$v'" >&2; exit 2 ;;
  esac
  train "runs/ri0/$v" "${flags[@]}" --init-from "$VAE/final" --init-skip energy --model.ebm-width 32 \
    --model.ebm-latent-cond-steps 0 --warmup-iters 0 --iters "$iters" --seed 0 "${LOG[@]}" "${DEV[@]}"
  dump "ri0_$v" "runs/ri0/$v/final" --n-cond 1000 --n-joint 1000 --n-diverse 0
  judge "ri0_$v" 1000 1000
done
dump ri0_shipped checkpoints/mebm --n-cond 1000 --n-joint 1000 --n-diverse 0   # the shipped model, for reference
judge ri0_shipped 1000 1000
[[ -e runs/ri0/infer0_rank/final/model.safetensors ]] && step runs/eval/energy_ri0_infer0_rank/energy.json \
  "$PY" -m model.energy_check --checkpoint runs/ri0/infer0_rank/final "${DATA[@]}" --n 300 --seed 0 \
  --noise-steps 10,30,100 --threads "$THREADS" --quiet --out runs/eval/energy_ri0_infer0_rank

GAINS=("$PY" -m scripts.stage_gains --classifier "$JUDGE_A" "$JUDGE_B" "${DATA[@]}" --threads "$THREADS")
gain() {  # gain OUT_NAME DUMP STAGE VERSUS VERSUS_STAGE [--joint]
  local out=runs/eval/$1.md
  [[ -e $2 && -e $4 ]] || return 0
  step "$out" "${GAINS[@]}" "$2" "${@:6}" --stage "$3" --versus "$4" --versus-stage "$5" --out "$out"
}
C=runs/dumps/ri0_vae_more.npz
for v in infer0 infer0_rank; do
  D=runs/dumps/ri0_$v.npz
  for stage in proposal data; do
    gain "ri0_${v}_cond_${stage}_vs_vae" "$D" "$stage" "$C" proposal
    gain "ri0_${v}_joint_${stage}_vs_vae" "$D" "$stage" "$C" proposal --joint
  done
  gain "ri0_${v}_cond_data_vs_vae_latent" "$D" data "$C" latent
done
gain ri0_rank_vs_infer0_cond runs/dumps/ri0_infer0_rank.npz data runs/dumps/ri0_infer0.npz data
gain ri0_rank_vs_infer0_joint runs/dumps/ri0_infer0_rank.npz data runs/dumps/ri0_infer0.npz data --joint
gain ri0_rank_vs_shipped runs/dumps/ri0_infer0_rank.npz data runs/dumps/ri0_shipped.npz data
gain ri0_rank_vs_shipped_joint runs/dumps/ri0_infer0_rank.npz data runs/dumps/ri0_shipped.npz data --joint
