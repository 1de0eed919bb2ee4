#!/usr/bin/env bash
# Issue 9 on one GPU: every model trains from scratch at the SAME wall-clock budget (BUDGET minutes), all
# at once on the same GPU (so each sees the same machine, load and clock), then each is sampled and scored
# by both judge families. Run from the repository root, on a machine with a CUDA GPU:
#
#   MNIST=../shared/data/mnist.npz BUDGET=4.5 bash scripts/gpu_runs.sh            # everything
#   SMOKE_ONLY=1 bash scripts/gpu_runs.sh                                          # a few iterations of each job
#
# Models: the full method (the CPU recipe, batch 64; and batch 256), the MoE VAE (our --variant vae, batch
# 64), MoPoE and MMVAE+ from MultiVae (published settings: batch 128, MMVAE+ decoder scale 0.75). The
# peers need multivae: in a venv (requirements-peer.txt), or as wheels in .whl/ (installed to /tmp/site).
# Outputs: $R/<model>/ (run folders), $R/dumps, $R/eval/<dump>_{A,B}, $R/eval/results*/ (tables, planes).
set -uo pipefail
MNIST=${MNIST:-.gpu/mnist.npz}
BUDGET=${BUDGET:-4.5}
R=${R:-runs/gpu}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}                                   # cpu: a dry run of this script (tiny sizes below)
NC=${NC:-200} NJ=${NJ:-2000} NG=${NG:-10000}             # test tuples per subset; prior samples; with the GMM
JOBS=${JOBS:-"full full256 vae mopoe mmvaeplus"}          # which models to train (the smoke test decides)
INIT_FROM=${INIT_FROM:-}                                 # our models start from these weights (no warm-up)
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}
mkdir -p "$R/dumps" "$R/eval" "$R/logs"
say() { echo "[$(date +%T)] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
say "data caches"
$PY -c "from model.data import load_polymnist as l; [l(s, 5, 0, '$MNIST', 'data_cache') for s in ('train', 'test')]" || exit 1
PEER_PY=${PEER_PY:-$PY}
if [ -d .whl ] && ! $PEER_PY -c "import multivae" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  PEER_PY="env PYTHONPATH=/tmp/site $PY"
fi

TRAIN="--mnist $MNIST --device $DEVICE --iters 1000000 --threads 3 --eval-every 500 --eval-samples 500 --ckpt-every 1000 --sample-every 1000"
PEER="--mnist $MNIST --device $DEVICE --threads 3 --n-cond $NC --n-prior $NJ --eval-every-min 1 --eval-samples 500"
START=(); [ -n "$INIT_FROM" ] && START=(--init-from "$INIT_FROM" --warmup-iters 0)
train_job() {  # NAME MINUTES [flags]: our model.train
  local n=$1 m=$2; shift 2
  $PY -m model.train $TRAIN "${START[@]}" --out-dir "$R/$n" --max-minutes "$m" "$@" > "$R/logs/train_$n.log" 2>&1
}
peer_job() {   # NAME MINUTES [flags]: MultiVae
  local n=$1 m=$2; shift 2
  $PEER_PY -m scripts.peer_mmvae_plus $PEER --out "$R/$n" --minutes "$m" "$@" > "$R/logs/train_$n.log" 2>&1
}
OURS=(full full256 vae)
declare -A FLAGS=([full]="--variant full" [full256]="--variant full --batch-size 256" [vae]="--variant vae"
                  [mopoe]="--model mopoe" [mmvaeplus]="--model mmvaeplus --decoder-scale 0.75")

# 1. smoke: a few iterations of every job on the GPU; a job that fails here is left out below
say "smoke"
OK=()
if [ -n "${SKIP_SMOKE:-}" ]; then OK=($JOBS); JOBS=""; fi
for n in full vae; do
  [[ " $JOBS " == *" $n "* ]] || continue
  if train_job smoke_$n 0 ${FLAGS[$n]} --iters 4 --warmup-iters 2 --eval-every 2 --eval-samples 20; then OK+=($n)
  else echo "SMOKE FAILED: $n"; tail -5 "$R/logs/train_smoke_$n.log"; fi
done
[[ " ${OK[*]} " == *" full "* && " $JOBS " == *" full256 "* ]] && OK+=(full256)
for n in mopoe mmvaeplus; do
  [[ " $JOBS " == *" $n "* ]] || continue
  if peer_job smoke_$n 0.02 ${FLAGS[$n]} --max-iters 3 --n-cond 10 --n-prior 20 --eval-every-min 100; then OK+=($n)
  else echo "SMOKE FAILED: $n"; tail -5 "$R/logs/train_smoke_$n.log"; fi
done
if [[ " ${OK[*]} " == *" full "* ]]; then  # the sampling and scoring path, tiny
  c=$R/smoke_full/final
  $PY -m model.prior --checkpoint $c --mnist $MNIST --n-fit 500 --iters 5 --device $DEVICE --out $R/smoke_prior.safetensors \
    > "$R/logs/smoke_eval.log" 2>&1 &&
  $PY -m model.sample --checkpoint $c --mnist $MNIST --n-cond 10 --n-joint 20 --n-diverse 2 --device $DEVICE --quiet \
    --prior $R/smoke_prior.safetensors --out $R/dumps/smoke.npz >> "$R/logs/smoke_eval.log" 2>&1 &&
  $PY -m model.evaluate --samples $R/dumps/smoke.npz --mnist $MNIST --n-cond 10 --n-joint 20 --n-fid 20 --quiet \
    --out $R/eval/smoke_A >> "$R/logs/smoke_eval.log" 2>&1 || { echo "SMOKE FAILED: sampling/scoring"; tail -5 "$R/logs/smoke_eval.log"; }
fi
say "smoke passed: ${OK[*]}"
[[ " ${OK[*]} " == *" full "* ]] || { echo "the full method failed its smoke test: stopping"; exit 1; }
[ -n "${SMOKE_ONLY:-}" ] && exit 0

# 2. training: every job at once, the same wall-clock budget
say "training ${OK[*]} for $BUDGET min each, at once"
for n in "${OK[@]}"; do
  case $n in mopoe|mmvaeplus) peer_job $n "$BUDGET" ${FLAGS[$n]} & ;; *) train_job $n "$BUDGET" ${FLAGS[$n]} & ;; esac
done
wait
pack() {  # tar files into PACK_DIR (optional: a folder that collects the results as they are ready)
  [ -n "${PACK_DIR:-}" ] && (cd "$R" && tar cf "$PACK_DIR/$1.tar" --ignore-failed-read "${@:2}" 2>/dev/null)
  return 0
}
for n in full full256 vae; do pack $n $n/final $n/log.jsonl $n/samples logs/train_$n.log; done
for n in "${OK[@]}"; do echo "== $n: $(grep -a -E 'time budget|trained|saved|stopped' "$R/logs/train_$n.log" | tail -2 | tr '\n' ' ')"; done

# 3. sampling (every stage; N(0, I) and the ex-post prior, 10,000 prior samples) and both judges
say "sampling and scoring"
S="--mnist $MNIST --device $DEVICE --threads 3 --quiet"
judge() {  # DUMP N_COND N_JOINT
  for j in A B; do
    clf=checkpoints/classifier; [ $j = B ] && clf=checkpoints/classifier_b
    $PY -m model.evaluate --samples $R/dumps/$1.npz --mnist $MNIST --classifier $clf --n-cond $2 --n-joint $3 \
      --n-fid $3 --threads 3 --quiet --name $1 --out $R/eval/$1_$j
  done
}
pipeline() {  # NAME: ours
  local c=$R/$1/final
  [ -f $c/model.safetensors ] || return
  $PY -m model.prior --checkpoint $c --mnist $MNIST --components 20 --device $DEVICE --out $c/prior.safetensors
  $PY -m model.sample --checkpoint $c $S --n-cond $NC --n-joint $NJ --n-diverse 20 --out $R/dumps/gpu_$1.npz \
    --image $R/$1/four.png
  judge gpu_$1 $NC $NJ
  $PY -m model.sample --checkpoint $c $S --n-cond 0 --n-diverse 0 --n-joint $NG --prior $c/prior.safetensors \
    --out $R/dumps/gpu_$1_gmm.npz
  judge gpu_$1_gmm 0 $NG
}
for n in "${OK[@]}"; do
  case $n in
    mopoe|mmvaeplus) [ -f $R/$n/samples.npz ] && { cp $R/$n/samples.npz $R/dumps/gpu_$n.npz; judge gpu_$n $NC $NJ > $R/logs/eval_$n.log 2>&1 & } ;;
    *) pipeline $n > $R/logs/eval_$n.log 2>&1 & ;;
  esac
done
wait
names=(); for n in full full256 vae mopoe mmvaeplus; do names+=(gpu_$n); done
$PY -m scripts.results_table "${names[@]}" --eval-dir $R/eval --dump-dir $R/dumps --out $R/eval/results
$PY -m scripts.results_table gpu_full_gmm gpu_full256_gmm gpu_vae_gmm --eval-dir $R/eval --dump-dir $R/dumps \
  --out $R/eval/results_gmm
for n in full full256 vae; do pack $n $n/final $n/log.jsonl $n/samples $n/four.png logs/train_$n.log; done
pack eval eval logs mopoe/log.jsonl mopoe/config.json mmvaeplus/log.jsonl mmvaeplus/config.json
say "done"
