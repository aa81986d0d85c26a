#!/usr/bin/env bash
# Long and small footage for the benchmarks, derived from the real videos in samples/ and tests/data/
# (their licences and credits: samples/ATTRIBUTION.md, tests/data/ATTRIBUTION.md). Writes bench-media/
# (git-ignored); scripts/bench_analyze.py and scripts/bench_local.py include it when it is there.
#
#   long_160x90.mp4   every real video at 160x90, 25 fps, one after another, three times (~5 min)
#   long_1080p.mp4    the same sequence once at 1920x1080 (~100 s), x264 default GOP
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-media
mkdir -p "$out"
inputs=()
for f in samples/*.mp4 tests/data/*.mp4; do
  case "$f" in *still_4s*|*pan_4px*|*subs_720p*|*noflash*|*lightbox_text_160*) continue ;; esac  # constructed or duplicates
  inputs+=(-i "$f")
done
n=$((${#inputs[@]} / 2))
norm() {  # $1: W:H; every input scaled (letterboxed) to it at 25 fps, then concatenated (concat filter)
  local graph="" i
  for ((i = 0; i < n; i++)); do
    graph+="[$i:v]scale=$1:force_original_aspect_ratio=decrease,pad=$1:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25,format=yuv420p,setpts=PTS-STARTPTS[v$i];"
  done
  for ((i = 0; i < n; i++)); do graph+="[v$i]"; done
  ffmpeg -v error -nostdin -y "${inputs[@]}" -filter_complex "${graph}concat=n=$n:v=1:a=0[out]" -map "[out]" -an \
    -c:v libx264 -preset veryfast -crf 23 "$2"
}
[ -s "$out/long_1080p.mp4" ] || norm 1920:1080 "$out/long_1080p.mp4"
if [ ! -s "$out/long_160x90.mp4" ]; then
  norm 160:90 "$out/once_160x90.mp4"
  ffmpeg -v error -nostdin -y -stream_loop 2 -i "$out/once_160x90.mp4" -c:v libx264 -preset veryfast -crf 23 \
    "$out/long_160x90.mp4"
  rm -f "$out/once_160x90.mp4"
fi
for f in "$out"/*.mp4; do
  printf '%s: %s\n' "$f" "$(ffprobe -v error -show_entries format=duration:stream=width,height -of csv=p=0 "$f" | tr '\n' ' ')"
done
