#!/usr/bin/env bash
# The runs behind the results table: the method, its three ablations, the MultiVae peer(s), each
# scored by the same evaluator, then the combined table and the headline FD-vs-coherence figure.
# Every model gets the same wall-clock budget (BUDGET minutes, warm-up included; every variant
# begins with the same deterministic 3,000-iteration MoE-VAE warm-up). Run from the repo root.
# Steps are independent: comment out what has already been run.
set -euo pipefail
MNIST=${MNIST:-../shared/data/mnist.npz}
BUDGET=${BUDGET:-75}
EVAL=${EVAL:-"--n-cond 1000 --n-joint 10000 --n-fid 10000 --n-curve 1000 --curve-steps 0,5,10,20,30,60"}
TRAIN="--mnist $MNIST --iters 100000 --max-minutes $BUDGET --eval-every 250 --sample-every 250 --ckpt-every 250"

# 1. the method and its ablations (model.train; variant names from TrainConfig)
.venv/bin/python -m model.train $TRAIN --out-dir runs/full                                      # the method
.venv/bin/python -m model.train $TRAIN --variant vae                --out-dir runs/vae                 # no EBM (MoE VAE)
.venv/bin/python -m model.train $TRAIN --variant noise_init         --out-dir runs/noise_init          # EBM chains from noise
.venv/bin/python -m model.train $TRAIN --variant no_latent_revision --out-dir runs/no_latent_revision  # ELBO, no latent chain

# 2. the peers (MultiVae in its own venv; see requirements-peer.txt)
[ -x .venv-peer/bin/python ] || { python -m venv .venv-peer && .venv-peer/bin/pip install -r requirements.txt -r requirements-peer.txt; }
.venv-peer/bin/python -m model.peer_mmvae_plus --model mmvaeplus --mnist $MNIST --minutes $BUDGET --out runs/peer_mmvaeplus
.venv-peer/bin/python -m model.peer_mmvae_plus --model mopoe     --mnist $MNIST --minutes $BUDGET --out runs/peer_mopoe

# 3. the evaluation (same classifiers, same test tuples, same seeds)
for run in full vae noise_init no_latent_revision; do
  .venv/bin/python -m model.evaluate --checkpoint runs/$run/checkpoint --mnist $MNIST $EVAL --out runs/$run/eval
done
for peer in mmvaeplus mopoe; do
  .venv/bin/python -m model.evaluate --samples runs/peer_$peer/samples.npz --mnist $MNIST $EVAL --out runs/peer_$peer/eval
done
.venv/bin/python -m model.evaluate compare runs/{full,noise_init,no_latent_revision,vae,peer_mmvaeplus,peer_mopoe}/eval/metrics.json \
  --names "full,EBM from noise,no latent revision,MoE VAE (no EBM),MMVAE+,MoPoE" --out runs/compare
