#!/usr/bin/env bash
# Judge A, the shipped checkpoints/classifier: the field's tiny CNN per modality (4x4 stride-2 convolutions,
# dropout, linear 980-128-10), trained on clean images of the PolyMNIST-style training split (data seed 0),
# 10 epochs, Adam 1e-3. Shipped test accuracy (accuracy.json): 98.5 / 98.1 / 98.3 / 98.1 / 98.1 %.
#
# Output: runs/judges/classifier/ (model.safetensors, config.json, accuracy.json); --install copies them into
# checkpoints/classifier. Run time: 3.1 minutes on the 2-core CPU machine (accuracy.json: "minutes").
#
#   bash scripts/judge_a.sh --mnist ../shared/data/mnist.npz [--install]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_args 1 "$@"

OUT=runs/judges/classifier
step $OUT/model.safetensors "$PY" -m model.classifier "${DATA[@]}" --epochs 10 --out $OUT
install_to $OUT checkpoints/classifier model.safetensors config.json accuracy.json
