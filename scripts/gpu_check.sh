#!/usr/bin/env bash
# On a machine with a CUDA GPU: TransNetV2 split and every model scorer on the GPU, in fp16 and
# bf16, with clips/s and peak GPU memory per scorer. Random full-size weights of the real
# architectures where real ones are absent (bench_score.py --random-weights), so no download.
# Under 8 minutes on one H100/H200. Never part of CI: it exits 0 with a note when no GPU is here.
#   bash scripts/gpu_check.sh [VIDEO_OR_DIR ...]   (default: samples/ and tests/data/)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || bash scripts/setup.sh --torch
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "no CUDA device visible to torch here: nothing to check"
  exit 0
fi
media=("$@")
[ ${#media[@]} -gt 0 ] || media=(samples tests/data)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
echo "== split: TransNetV2 on cuda against pyscenedetect on CPU (ratio to one ffmpeg decode)"
timeout 180 "$PY" scripts/bench_split.py --transnetv2 --device cuda "${media[@]}" | tail -3
for dtype in fp16 bf16; do
  echo "== score: every model scorer on cuda, $dtype"
  timeout 150 "$PY" scripts/bench_score.py --random-weights --device cuda --dtype "$dtype" "${media[@]}"
done
echo "== score: producer (decode + preprocessing) against the GPU consumer, 1 and 4 decode workers"
timeout 120 "$PY" scripts/bench_score.py --random-weights --device cuda --dtype fp16 --decode-workers 4 "${media[@]}"
