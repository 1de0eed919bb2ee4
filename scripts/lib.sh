# Shared by the recipes in scripts/*.sh: sourced by them, never run on its own.
#
# Every recipe takes the same options:
#   --mnist PATH   a local MNIST file (Keras .npz or a torchvision MNIST/raw folder; a relative path is taken
#                  from the folder the recipe is started in); or set MNIST=PATH.
#                  Without it the commands download MNIST through torchvision. Example: ../shared/data/mnist.npz
#   --dry-run      print the commands (and which steps would be skipped) without running anything
#   --install      (only the recipes of shipped artefacts) copy the result into checkpoints/ at the end
#   -h, --help     this help
# Environment: PY (the Python to use, default python), JUDGE_A / JUDGE_B (the judges' folders, default the
# shipped checkpoints/classifier and checkpoints/classifier_b), PEER_PY (MultiVae's Python, default
# .venv-peer/bin/python), THREADS (torch threads per job, default 1, as measured).
# Steps are idempotent: a step whose output exists is skipped, so an interrupted recipe continues where it
# stopped (a training step resumes from its last checkpoint). Everything is written under runs/.
set -euo pipefail
CALLER_DIR=$PWD
RECIPE=$(realpath "$0")
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PY:-python}
PEER_PY=${PEER_PY:-.venv-peer/bin/python}
JUDGE_A=${JUDGE_A:-checkpoints/classifier}
JUDGE_B=${JUDGE_B:-checkpoints/classifier_b}
THREADS=${THREADS:-1}
MNIST=${MNIST:-}
DRY_RUN=0
INSTALL=0

parse_args() {  # parse_args ALLOW_INSTALL "$@"
  local allow=$1; shift
  while [[ $# -gt 0 ]]; do
    case $1 in
      --mnist) MNIST=${2:?--mnist needs a path}; shift 2 ;;
      --dry-run) DRY_RUN=1; shift ;;
      --install)
        [[ $allow == 1 ]] || { echo "$(basename "$0"): --install is not an option of this recipe" >&2; exit 2; }
        INSTALL=1; shift ;;
      -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$RECIPE"; sed -n '3,14s/^# \{0,1\}//p' scripts/lib.sh; exit 0 ;;
      *) echo "$(basename "$0"): unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
  done
  [[ -z $MNIST || $MNIST == /* ]] || MNIST=$CALLER_DIR/$MNIST   # relative to where the recipe was started
  DATA=(); [[ -n $MNIST ]] && DATA=(--mnist "$MNIST")
  [[ $DRY_RUN == 1 ]] || mkdir -p runs/dumps runs/eval
}

run() {  # run CMD...: echo it, and run it unless --dry-run
  echo "+ $*"
  [[ $DRY_RUN == 1 ]] || "$@"
}

step() {  # step OUTPUT CMD...: CMD unless OUTPUT exists
  local out=$1; shift
  if [[ -e $out ]]; then echo "skip (exists): $out"; return 0; fi
  run "$@"
}

train() {  # train OUT_DIR FLAGS...: model.train into OUT_DIR, resumed when a checkpoint is there, skipped when done
  local out=$1; shift
  if [[ -e $out/final/model.safetensors ]]; then echo "skip (exists): $out/final"; return 0; fi
  local resume=(); [[ -d $out/checkpoint ]] && resume=(--resume)
  run "$PY" -m model.train "${DATA[@]}" --threads "$THREADS" --out "$out" "${resume[@]}" "$@"
}

judge() {  # judge NAME N_COND N_JOINT: score runs/dumps/NAME.npz by both judges into runs/eval/NAME_{A,B}
  local name=$1 nc=$2 nj=$3 j clf
  for j in A B; do
    clf=$JUDGE_A; [[ $j == B ]] && clf=$JUDGE_B
    step "runs/eval/${name}_$j/metrics.json" "$PY" -m model.evaluate --samples "runs/dumps/$name.npz" "${DATA[@]}" \
      --classifier "$clf" --n-cond "$nc" --n-joint "$nj" --n-fid "$nj" --threads "$THREADS" --quiet --name "$name" \
      --out "runs/eval/${name}_$j"
  done
}

dump() {  # dump NAME CHECKPOINT FLAGS...: model.sample into runs/dumps/NAME.npz
  local name=$1 ck=$2; shift 2
  step "runs/dumps/$name.npz" "$PY" -m model.sample --checkpoint "$ck" "${DATA[@]}" --threads "$THREADS" --quiet \
    --seed 0 --out "runs/dumps/$name.npz" "$@"
}

install_to() {  # install_to SRC_DIR DEST_DIR FILE...: with --install, copy those files of SRC_DIR into DEST_DIR
  local src=$1 dest=$2 f; shift 2
  if [[ $INSTALL != 1 ]]; then echo "done: $src (--install copies $* into $dest)"; return 0; fi
  run mkdir -p "$dest"
  for f in "$@"; do run cp "$src/$f" "$dest/$f"; done
}
