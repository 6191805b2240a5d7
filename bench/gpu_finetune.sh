#!/usr/bin/env bash
# Fine-tunes configs/transformer_gpu.yaml and transformer_gpu_6l.yaml side by side on a lent GPU machine
# that has PyTorch and transformers but no MLflow, no network and a 64 MB upload: `triage finetune` writes
# float16 checkpoints (shards of 15 MB) under $OUT, to be finished where MLflow lives with
# `triage train --data ... --config configs/<name>.yaml --finetuned DIR`. Expects, made on the tracking
# machine (README, "Fine-tuning on another machine"):
#   .gpu/base/        the trimmed base model, packed by bench/gpu_pack.py (exact, 26 MB instead of 172)
#   .gpu/data/*.gz    the training corpora, gzipped
#   .gpu/whl/*.whl    what the GPU machine lacks (pydantic, pydantic-settings and their needs)
set -euo pipefail
OUT=${OUT:-out/gpu}
MINUTES=${MINUTES:-6}                  # each run's time guard: the best checkpoint so far is kept
CONFIG_DIR=${CONFIG_DIR:-configs}
CONFIGS=${CONFIGS:-transformer_gpu transformer_gpu_6l}
WHEELS=${WHEELS:-.gpu/whl}
mkdir -p "$OUT"
if ls "$WHEELS"/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-site "$WHEELS"/*.whl
fi
export PYTHONPATH=/tmp/gpu-site:$PWD PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=:4096:8 TRIAGE_HOME=/tmp/gpu-home
python3 bench/gpu_pack.py unpack .gpu/base /tmp/gpu-base
mkdir -p /tmp/gpu-data
for f in .gpu/data/*.gz; do gunzip -c "$f" > "/tmp/gpu-data/$(basename "$f" .gz)"; done
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
run() {
  python3 -m triage finetune --data /tmp/gpu-data --config "$CONFIG_DIR/$1.yaml" --base-model /tmp/gpu-base \
    --out "$OUT/$1" --dtype float16 --shard-mb 15 --max-minutes "$MINUTES" 2>&1 \
    | grep --line-buffered -v "Warning\|warnings.warn" | sed -u "s/^/[$1] /" | tee -a "$OUT/log.txt"
}
pids=()
for name in $CONFIGS; do run "$name" & pids+=($!); done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
ls -la "$OUT"/*
exit $rc
