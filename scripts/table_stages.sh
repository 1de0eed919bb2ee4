#!/usr/bin/env bash
# The stage tables of docs/results.md for the shipped checkpoint:
#   1. the test-time chains chosen on 400 *training* tuples per modality by judge A alone (scripts.tune_chains;
#      judge B and the test set stay out of the choice): the latent revision, then the conditional EBM latent
#      chain, each STEPS:STEP_SIZE:NOISE, then the whole chain with and without the conditional EBM latent chain;
#   2. every stage on 1,000 test tuples per modality, paired, with 95 % bootstrap intervals (scripts.stage_gains),
#      with and without the conditional EBM latent chain, and the full method's final stage against the MoE VAE's proposals on the same tuples (needs runs/vae140
#      from scripts/table_readme.sh);
#   3. the joint stages, paired, on 10,000 samples from the ex-post prior.
# Output: runs/tune/*.json, runs/eval/gains_*.md.
# Run time: not timed as a whole; the tuning runs and the 1,000-tuple dumps are a few CPU-minutes each on one
# thread of the 2-core CPU machine.
#
#   bash scripts/table_stages.sh --mnist ../shared/data/mnist.npz
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 0 "$@"
CHECKPOINT=${CHECKPOINT:-checkpoints/mebm}
TUNE=("$PY" -m scripts.tune_chains --checkpoint "$CHECKPOINT" "${DATA[@]}" --n 400 --threads "$THREADS")
[[ $DRY_RUN == 1 ]] || mkdir -p runs/tune

# 1. chain tuning on training tuples, judge A
step runs/tune/latent.json "${TUNE[@]}" --data-steps 0 --ebm-latent 0:0.03:0.03 --out runs/tune/latent.json \
  --latent 20:0.03:0.03,20:0.03:0.01,20:0.03:0,20:0.1:0.1,20:0.1:0.03,50:0.1:0.03,20:0.2:0.02,20:0.2:0
step runs/tune/ebm_latent.json "${TUNE[@]}" --data-steps 0 --latent 20:0.03:0.03 --out runs/tune/ebm_latent.json \
  --ebm-latent 10:0.03:0.03,10:0.06:0.06,10:0.1:0.1,10:0.1:0.03,30:0.05:0.05,10:0.2:0.2
step runs/tune/full_chain.json "${TUNE[@]}" --latent 20:0.03:0.03 --ebm-latent 10:0.03:0.03,0:0.03:0.03 \
  --out runs/tune/full_chain.json

# 2. conditional stages on 1,000 test tuples per modality, paired; against the MoE VAE's proposals
dump mebm_c1000 "$CHECKPOINT" --n-cond 1000 --n-joint 0 --n-diverse 0
dump vae140_c1000 runs/vae140/final --n-cond 1000 --n-joint 0 --n-diverse 0
GAINS=("$PY" -m scripts.stage_gains --classifier "$JUDGE_A" "$JUDGE_B" "${DATA[@]}" --threads "$THREADS")
step runs/eval/gains_mebm_c1000.md "${GAINS[@]}" runs/dumps/mebm_c1000.npz --out runs/eval/gains_mebm_c1000.md
dump mebm_ebmcond_c1000 "$CHECKPOINT" --n-cond 1000 --n-joint 0 --n-diverse 0 --ebm-latent-steps 10
step runs/eval/gains_mebm_ebmcond_c1000.md "${GAINS[@]}" runs/dumps/mebm_ebmcond_c1000.npz \
  --out runs/eval/gains_mebm_ebmcond_c1000.md   # the same with the conditional EBM latent chain (10 steps)
step runs/eval/gains_vae140_vs_mebm_c1000.md "${GAINS[@]}" runs/dumps/mebm_c1000.npz \
  --versus runs/dumps/vae140_c1000.npz --out runs/eval/gains_vae140_vs_mebm_c1000.md

# 3. joint stages on 10,000 ex-post prior samples, paired
dump mebm_gmm10k "$CHECKPOINT" --n-cond 0 --n-diverse 0 --n-joint 10000 --prior "$CHECKPOINT/prior.safetensors"
step runs/eval/gains_mebm_gmm10k.md "${GAINS[@]}" runs/dumps/mebm_gmm10k.npz --joint --out runs/eval/gains_mebm_gmm10k.md
