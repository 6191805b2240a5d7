#!/usr/bin/env bash
# Makes .gpu/ for bench/gpu_finetune.sh, on the machine where MLflow lives: the trimmed base model the GPU
# configs fine-tune from (packed bit for bit by bench/gpu_pack.py), the corpora gzipped, and the wheels a
# GPU machine without network lacks (pydantic and pydantic-settings with their needs, for its Python 3.12).
# Add `/.gpu/` to .git/info/exclude so none of it is committed. Only the top-level *.jsonl files of $DATA
# travel, so $DATA must hold nothing else (the split is fingerprinted: a mismatch is refused when finishing).
set -euo pipefail
DATA=${DATA:-../shared/data/train}
PY=${PY:-.venv/bin/python}
TRIAGE=${TRIAGE:-.venv/bin/triage}
rm -rf .gpu/base .gpu/data .gpu/whl
mkdir -p .gpu/data .gpu/whl
base=$("$TRIAGE" base-model prepare --data "$DATA" --config configs/transformer_gpu.yaml | tail -1)
"$PY" bench/gpu_pack.py pack "$base" .gpu/base
for f in "$DATA"/*.jsonl; do gzip -c -6 "$f" > ".gpu/data/$(basename "$f").gz"; done
pins=$("$PY" -m pip list --format=freeze 2>/dev/null \
  | grep -iE '^(pydantic|pydantic[-_]core|pydantic[-_]settings|python[-_]dotenv|annotated[-_]types|typing[-_]inspection|typing[-_]extensions)==' \
  || { echo "pydantic is not installed in $PY's environment (make install first)" >&2; exit 1; })
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl $pins
du -sh .gpu/*
