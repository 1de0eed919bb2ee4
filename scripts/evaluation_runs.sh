#!/usr/bin/env bash
# The runs behind the results table of README.md, in the order they were run (2 CPU cores, two jobs
# at a time, each on one thread). Every model of the table gets the same wall-clock budget, BUDGET
# minutes, warm-up included: every variant of ours begins with the same deterministic 3,000-iteration
# MoE-VAE warm-up (11.5 min), then continues as its variant. The peer trains from scratch for the
# same BUDGET. Run from the repository root; steps are independent.
set -euo pipefail
MNIST=${MNIST:-../shared/data/mnist.npz}
BUDGET=${BUDGET:-60}
PY=.venv/bin/python
export OMP_WAIT_POLICY=PASSIVE
TRAIN="--mnist $MNIST --resume --iters 100000 --threads 1 --eval-every 250 --sample-every 250 --ckpt-every 250"
EVAL="--mnist $MNIST --threads 1 --n-cond 500 --n-joint 10000 --n-fid 10000"

from_warmup() {  # a run folder that starts from the shared warm-up checkpoint
  mkdir -p runs/$1 && cp -r runs/warmup/checkpoint_warmup runs/$1/checkpoint \
    && cp -r runs/warmup/checkpoint_warmup runs/$1/checkpoint_warmup && cp runs/warmup/train_config.json runs/$1/
}

# 0. the judges and the shared warm-up
$PY -m model.classifier --mnist $MNIST --out checkpoints/classifier
$PY -m model.train --mnist $MNIST --out-dir runs/warmup --variant vae --iters 3000 --warmup-iters 3000

# 1. the method and its three ablations (variant names from TrainConfig)
for v in full noise_init no_latent_revision vae; do
  from_warmup $v
  $PY -m model.train $TRAIN --out-dir runs/$v --variant $v --max-minutes $BUDGET
done

# 2. the peer (MultiVae in its own venv), from scratch for BUDGET minutes. With the published Laplace
#    decoder scale 0.75 it stayed at chance for the 20 minutes we gave it (log in the README), so the
#    table's run uses scale 0.1 (everything else as published); the first command is that 20-min probe.
[ -x .venv-peer/bin/python ] || { python3 -m venv .venv-peer && .venv-peer/bin/pip install -r requirements.txt -r requirements-peer.txt; }
.venv-peer/bin/python -m scripts.peer_mmvae_plus --model mmvaeplus --mnist $MNIST --minutes 20 \
  --eval-every-min 10 --n-cond 500 --n-prior 10000 --threads 1 --out runs/peer_mmvaeplus_published
.venv-peer/bin/python -m scripts.peer_mmvae_plus --model mmvaeplus --mnist $MNIST --minutes $BUDGET --decoder-scale 0.1 \
  --eval-every-min 10 --n-cond 500 --n-prior 10000 --threads 1 --out runs/peer_mmvaeplus

# 3. the evaluation (same classifiers, same test tuples, same seeds)
for v in full noise_init no_latent_revision; do
  $PY -m model.evaluate --checkpoint runs/$v/checkpoint $EVAL --n-curve 500 --curve-steps 0,10,30,60 --out runs/$v/eval10k
done
$PY -m model.evaluate --checkpoint runs/vae/checkpoint $EVAL --out runs/vae/eval10k
$PY -m model.evaluate --samples runs/peer_mmvaeplus/samples.npz $EVAL --out runs/peer_mmvaeplus/eval10k
$PY -m model.evaluate compare runs/{full,noise_init,no_latent_revision,vae,peer_mmvaeplus}/eval10k/metrics.json \
  --names "full method,EBM chains from noise,no latent revision,MoE VAE (no EBM),MMVAE+ (scale 0.1)" --out runs/compare

# 4. the step ablation: 10 / 30 / 60 data-space Langevin steps per training iteration, short runs
#    (10 min after the warm-up), quick evaluation; trend.png plots each metric against the steps
for s in 10 60 30; do
  from_warmup steps$s
  $PY -m model.train $TRAIN --out-dir runs/steps$s --variant full --data-steps $s --max-minutes 21.6
done
for s in 10 30 60; do
  $PY -m model.evaluate --checkpoint runs/steps$s/checkpoint --mnist $MNIST --threads 1 --n-cond 200 \
    --n-joint 2000 --n-fid 2000 --n-curve 0 --out runs/steps$s/evalq
done
for s in 10 60; do   # the test chain matched to the training chain
  $PY -m model.evaluate --checkpoint runs/steps$s/checkpoint --mnist $MNIST --threads 1 --n-cond 200 \
    --n-joint 2000 --n-fid 2000 --n-curve 0 --data-steps $s --out runs/steps$s/evalq_matched
done
$PY -m model.evaluate compare runs/steps{10,30,60}/evalq/metrics.json --names "10 steps,30 steps,60 steps" \
  --x 10,30,60 --out runs/compare_steps
