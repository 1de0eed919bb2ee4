#!/usr/bin/env bash
# The results table of README.md: at 140 CPU-minutes each, the shipped full method, the MoE VAE and MoPoE,
# each from N(0, I) and from its ex-post prior, read by both judges. 200 test tuples per single observed
# modality (1,000 conditionals), 2,000 prior samples, 2,000 real test tuples for the FD, seed 0.
#   - full method: CHECKPOINT (default checkpoints/mebm, with its prior.safetensors);
#   - MoE VAE: the 13,409-iteration VAE of scripts/checkpoint.sh continued to 140 CPU-minutes in all (the
#     same 20 CPU-minutes the full method had; its iteration count was not recorded, so this step keeps the
#     CPU-time budget), then its own ex-post prior;
#   - MoPoE from MultiVae (its own venv: python -m venv .venv-peer && .venv-peer/bin/pip install -r
#     requirements.txt -r requirements-peer.txt), 18,722 iterations from scratch, then its ex-post prior
#     (a 20-component mixture on its joint posterior's latents).
# Output: runs/eval/table_readme/results.md (every stage) and plane.png.
# Run time on one thread per job of the 2-core CPU machine: MoE VAE 20 CPU-minutes (after scripts/checkpoint.sh
# step 1), MoPoE 140 CPU-minutes (146 wall-minutes), priors about a minute each; sampling and scoring were
# not timed (minutes per dump).
#
#   bash scripts/table_readme.sh --mnist ../shared/data/mnist.npz
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 0 "$@"
CHECKPOINT=${CHECKPOINT:-checkpoints/mebm}
S=(--n-cond 200 --n-joint 2000 --n-diverse 20)
G=(--n-cond 0 --n-diverse 0 --n-joint 2000)

# the full method (shipped)
dump mebm "$CHECKPOINT" "${S[@]}"
dump mebm_gmm "$CHECKPOINT" "${G[@]}" --prior "$CHECKPOINT/prior.safetensors"

# the MoE VAE at the same 140 CPU-minutes
[[ -e runs/mebm/vae/final/model.safetensors || $DRY_RUN == 1 ]] || {
  echo "first run step 1 of scripts/checkpoint.sh (runs/mebm/vae/final)" >&2; exit 1; }
if [[ ! -d runs/vae140 ]]; then  # a copy of the VAE's last checkpoint, continued to its new budget
  run mkdir -p runs/vae140
  run cp -r runs/mebm/vae/checkpoint runs/mebm/vae/train_config.json runs/vae140/
fi
train runs/vae140 --iters 100000 --max-cpu-minutes 140
step runs/vae140/prior.safetensors "$PY" -m model.prior --checkpoint runs/vae140/final "${DATA[@]}" --components 20 \
  --threads "$THREADS" --out runs/vae140/prior.safetensors
dump vae140 runs/vae140/final "${S[@]}"
dump vae140_gmm runs/vae140/final "${G[@]}" --prior runs/vae140/prior.safetensors

# MoPoE (MultiVae)
step runs/peer/mopoe140/samples.npz "$PEER_PY" -m scripts.peer_mmvae_plus --model mopoe "${DATA[@]}" \
  --max-iters 18722 --minutes 100000 --n-cond 200 --n-prior 2000 --eval-every-min 20 --ckpt-every-min 10 \
  --threads "$THREADS" --out runs/peer/mopoe140
step runs/peer/mopoe140_gmm/samples.npz "$PEER_PY" -m scripts.peer_mmvae_plus --model mopoe "${DATA[@]}" \
  --from-model runs/peer/mopoe140/model --ex-post-prior 20 --n-cond 0 --n-prior 2000 --threads "$THREADS" \
  --out runs/peer/mopoe140_gmm
for n in mopoe140 mopoe140_gmm; do step runs/dumps/$n.npz cp runs/peer/$n/samples.npz runs/dumps/$n.npz; done

for n in mebm vae140 mopoe140; do judge $n 200 2000; done
for n in mebm_gmm vae140_gmm mopoe140_gmm; do judge $n 0 2000; done
run "$PY" -m scripts.results_table mebm mebm_gmm vae140 vae140_gmm mopoe140 mopoe140_gmm \
  --eval-dir runs/eval --dump-dir runs/dumps --out runs/eval/table_readme \
  --labels "full method|full method|MoE VAE|MoE VAE|MoPoE (MultiVae)|MoPoE (MultiVae)"
