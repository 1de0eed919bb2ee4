#!/usr/bin/env bash
# Which term of the full method costs the proposals? After step 2 of scripts/checkpoint.sh (299 iterations of the
# full method from the MoE VAE) the conditional proposals read 1.3 points below those of the MoE VAE continued for
# the same time (judge B, 1,000 tuples per modality). Here one MoE VAE (--variant vae, ITERS_VAE iterations, seed 0)
# is continued for 299 iterations in eight ways, every other setting as in step 2 (a fresh EBM 32 channels wide):
#   vae_more     the MoE VAE itself (--variant vae): the control
#   full         the full method as shipped (lambda_S = --teach-weight 0.1, lambda_I = --inference-teach-weight 0.1)
#   no_teach_i   lambda_I = 0: the inference experts no longer fit the latents behind the revised prior samples
#   no_teach_g   lambda_S = 0: the generator no longer chases its EBM-revised samples
#   no_teach     both 0: the latent revision's terms and the MoE ELBO only (the EBM trains, but touches nothing)
#   no_rev_recon the generator does not learn from the latent revision (--revision-recon-weight 0)
#   no_rev_infer the inference experts do not fit the revised latents (--revision-infer-weight 0)
#   no_latent_revision  neither (--variant no_latent_revision: the MoE ELBO and the teaching terms)
# Each is then sampled (1,000 test tuples per observed modality, 1,000 joint samples from N(0, I), seed 0), scored by
# both judges, and compared with the control's proposals, paired, with 95 % bootstrap intervals (scripts.stage_gains).
#   ITERS_VAE (default 4000), VARIANTS (default all eight, in the order above: run a subset, e.g. two
#   recipes side by side on two cores; run the comparisons once every variant is done).
# Output: runs/pgap/*, runs/dumps/pgap_*.npz, runs/eval/pgap_*.
# Run time on one thread of the 2-core CPU machine (two measured runs): the MoE VAE 37-49 minutes, each full-method
# variant 20-29 minutes (two side by side; no_latent_revision about 21), its sampling and scoring about 10.
#
#   bash scripts/proposal_gap.sh --mnist ../shared/data/mnist.npz
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 0 "$@"
DEV=(); [[ -n ${DEVICE:-} ]] && DEV=(--device "$DEVICE")
LOG=(--eval-every 0 --ckpt-every 100 --sample-every 100000)
VAE=runs/pgap/vae

train "$VAE" --variant vae --iters "${ITERS_VAE:-4000}" --seed 0 "${LOG[@]}" "${DEV[@]}"
ALL="full no_teach_i no_teach_g no_teach no_rev_recon no_rev_infer no_latent_revision"
for v in ${VARIANTS:-vae_more $ALL}; do
  case $v in
    vae_more) flags=(--variant vae) ;;
    full) flags=(--variant full) ;;
    no_teach_i) flags=(--variant full --inference-teach-weight 0) ;;
    no_teach_g) flags=(--variant full --teach-weight 0) ;;
    no_teach) flags=(--variant full --teach-weight 0 --inference-teach-weight 0) ;;
    no_rev_recon) flags=(--variant full --revision-recon-weight 0) ;;
    no_rev_infer) flags=(--variant full --revision-infer-weight 0) ;;
    no_latent_revision) flags=(--variant no_latent_revision) ;;
    *) echo "proposal_gap.sh: unknown variant '$v'" >&2; exit 2 ;;
  esac
  train "runs/pgap/$v" "${flags[@]}" --init-from "$VAE/final" --init-skip energy --model.ebm-width 32 \
    --model.ebm-latent-cond-steps 0 --warmup-iters 0 --iters 299 --seed 0 "${LOG[@]}" "${DEV[@]}"
  dump "pgap_$v" "runs/pgap/$v/final" --n-cond 1000 --n-joint 1000 --n-diverse 0
  judge "pgap_$v" 1000 1000
done

GAINS=("$PY" -m scripts.stage_gains --classifier "$JUDGE_A" "$JUDGE_B" "${DATA[@]}" --threads "$THREADS")
for v in $ALL; do   # against the control's proposals, paired: proposals, final stage
  [[ -e runs/dumps/pgap_$v.npz && -e runs/dumps/pgap_vae_more.npz ]] || continue
  for kind in cond joint; do
    j=(); [[ $kind == joint ]] && j=(--joint)
    for stage in proposal data; do
      step "runs/eval/pgap_${v}_${kind}_${stage}_vs_vae_more.md" "${GAINS[@]}" "runs/dumps/pgap_$v.npz" "${j[@]}" \
        --versus runs/dumps/pgap_vae_more.npz --versus-stage proposal --stage "$stage" \
        --out "runs/eval/pgap_${v}_${kind}_${stage}_vs_vae_more.md"
    done
  done
done
