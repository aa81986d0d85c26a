#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: ffmpeg, a virtualenv in .venv, curate with
# its CPU analyzers (OCR, NSFW: ONNX models shipped in their packages) and test dependencies.
# `--torch` also installs torch==2.13.0 first (the CPU build where the machine provides it), the
# TransNetV2 splitter and the model scorers (open_clip, transformers); see below for why pip may
# still replace that torch.
set -euo pipefail
cd "$(dirname "$0")/.."
with_torch=0
for arg in "$@"; do
  case "$arg" in
    --torch) with_torch=1 ;;
    *) echo "usage: scripts/setup.sh [--torch]" >&2; exit 2 ;;
  esac
done

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  echo "== installing ffmpeg"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq ffmpeg >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
pip_q() {
  # Quiet on success; on failure show pip's own words.
  if ! .venv/bin/pip install -q --disable-pip-version-check "$@" >.venv/pip.log 2>&1; then
    grep -v "^WARNING: Location" .venv/pip.log | tail -30 >&2
    echo "pip install $* failed (full log: .venv/pip.log)" >&2
    exit 1
  fi
}
if [ "$with_torch" = 1 ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "== installing torch==2.13.0"
  pip_q torch==2.13.0
fi
echo "== installing curate into .venv"
extras="test,vision"
[ "$with_torch" = 1 ] && extras="$extras,models,score"
# torch is not held to the CPU build installed above: open_clip needs torchvision, and every
# torchvision build this index has is linked against CUDA torch (with the CPU torch 2.13 its
# operators fail to load: "operator torchvision::nms does not exist"), so pip takes the torch
# that the newest torchvision pins, with its CUDA libraries; it runs on the CPU all the same.
# scenedetect and rapidocr bring opencv-python, whose cv2 files land over the headless build's: it
# is held to the versions pyproject.toml allows the headless one (4.14 and 5.1 resize 40-50 % slower).
constraints=.venv/constraints.txt
echo "opencv-python!=4.14.*,!=5.1.*" >"$constraints"
pip_q -c "$constraints" -e ".[$extras]"
.venv/bin/python -c "import curate, stages.split" || { echo "installation failed" >&2; exit 1; }
# An editable install leaves the project's own modules uncompiled, and where PYTHONDONTWRITEBYTECODE
# is set (as on this project's CI machines) every process compiled them again: 50-60 ms of each
# task's start-up. Python still reads bytecode that is there, and recompiles an edited module by itself.
.venv/bin/python -m compileall -q -j 0 curate stages
