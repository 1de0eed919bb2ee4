#!/usr/bin/env bash
# Judge B, the shipped checkpoints/classifier_b: another architecture (per modality 3x3 convolutions 3-8-16
# with batch norm and max pooling, linear 784-64-10), trained with blur and noise augmentation so that blurry
# and sharp samples are read alike; 3 epochs, Adam 2e-3, initialisation and batch order seed 1.
# Shipped test accuracy (accuracy.json): 98.1 / 98.2 / 98.6 / 98.0 / 97.8 %.
#
# Output: runs/judges/classifier_b/; --install copies it into checkpoints/classifier_b.
# Run time: 16.6 minutes on one thread of the 2-core CPU machine, shared with other jobs (accuracy.json).
#
#   bash scripts/judge_b.sh --mnist ../shared/data/mnist.npz [--install]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 1 "$@"

OUT=runs/judges/classifier_b
step $OUT/model.safetensors "$PY" -m model.classifier "${DATA[@]}" --arch vgg --augment --epochs 3 --lr 2e-3 \
  --train-seed 1 --threads "$THREADS" --out $OUT
install_to $OUT checkpoints/classifier_b model.safetensors config.json accuracy.json
