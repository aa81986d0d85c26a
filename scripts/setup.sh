#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: ffmpeg, a virtualenv in .venv, curate with
# its CPU analyzers (OCR, NSFW: ONNX models shipped in their packages) and test dependencies.
# `--torch` also installs torch==2.13.0 first (the CPU build where the machine provides it, so no
# multi-GB CUDA build is pulled), the TransNetV2 splitter and the model scorers (open_clip,
# transformers).
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
# Hold pip to the torch already here: otherwise a newer torchvision (open_clip needs one) pulls a
# newer torch, the multi-GB CUDA build, over the CPU one.
constraints=.venv/constraints.txt
: >"$constraints"
installed_torch=$(.venv/bin/python -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || true)
[ -n "$installed_torch" ] && echo "torch==$installed_torch" >"$constraints"
# scenedetect and rapidocr bring opencv-python, whose cv2 files land over the headless build's: hold
# it to the versions pyproject.toml allows the headless one (4.14 and 5.1 resize 40-50 % slower).
echo "opencv-python!=4.14.*,!=5.1.*" >>"$constraints"
pip_q -c "$constraints" -e ".[$extras]"
if [ -n "$installed_torch" ] && [ -d .venv/lib/python3*/site-packages/nvidia ]; then
  echo "warning: CUDA libraries were installed into .venv (a package asked for a CUDA torch)" >&2
fi
.venv/bin/python -c "import curate, stages.split" || { echo "installation failed" >&2; exit 1; }
