#!/usr/bin/env bash
# Profiles baracuda's flash kernel on one bench shape with Nsight Compute (clocks left as the
# driver sets them): the full section set with per-instruction SASS counters. Writes the report,
# its details page and its SASS source page (CSV, with warp-stall samples per instruction) to
# $OUT (the device tool's output folder) or build/profile.
#
#   bash benchmarks/profile_flash.sh NAME [bench flash arguments...]
#   e.g. bash benchmarks/profile_flash.sh bf16-d128-8k --dtypes bf16 --head-dims 128 --seqlens 8k --causal no
set -uo pipefail
out="${OUT:-build/profile}"
name="$1"
shift
mkdir -p "$out"
ncu --clock-control none --kernel-name regex:flash_sdpa --launch-skip 2 --launch-count 1 \
  --set full --import-source yes -f -o "$out/$name" \
  python3 -m baracuda bench flash --no-peers --warmup 2 --repeats 1 "$@" --out /tmp/profile-bench.json \
  >"$out/$name.ncu.log" 2>&1
ncu -i "$out/$name.ncu-rep" --page details >"$out/$name.details.txt"
ncu -i "$out/$name.ncu-rep" --page source --csv --print-source sass >"$out/$name.sass.csv"
