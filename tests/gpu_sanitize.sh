#!/usr/bin/env bash
# Runs the C GPU tests and a pytest subset of every backend (portable f32 / f64, hopper f16 /
# bf16, the one-rank ring) under compute-sanitizer's memcheck, racecheck, initcheck (C tests
# only) and synccheck, and writes one summary line per (tool, program): the errors the tool
# reported and how many baracuda kernels the program launches (counted once with ncu, filtered
# to the library's kernels; every tool runs the same programs).
#
#   bash tests/gpu_sanitize.sh [BUILD_DIR]
#
# BUILD_DIR holds the C tests (default build/ctest, as tests/run.sh makes it); baracuda must be
# installed in the active Python with its test extras and torch. Logs and summary.txt go to
# BARACUDA_SANITIZE_OUT (default build/sanitize). BARACUDA_SANITIZE_PYTEST_K selects the pytest
# subset; BARACUDA_SANITIZE_TOOLS and BARACUDA_SANITIZE_PROGRAMS (c_flash, c_ring, pytest) narrow
# a rerun, and BARACUDA_SANITIZE_COUNT=0 skips the kernel count. Exits non-zero when any tool
# reports an error or a program fails.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$repo/build/ctest}"
out="${BARACUDA_SANITIZE_OUT:-$repo/build/sanitize}"
# Every element on both flash families (hopper for f16 / bf16, portable for f32 / f64), each score
# modifier, rows with no visible key, forced portable, and the one-rank ring and seed steps.
subset="${BARACUDA_SANITIZE_PYTEST_K:-(test_matches_reference and (d64-b2h3-q33k70 or d256-b2h3-q33k70 or causal-br-win16-8 or cap30 or alibi-bh or mask-expand) and not mask-full and not mask-11 and not mask-b11 and not mask-rank and not mask-trans) or test_rows_with_no_visible_key or test_portable_preference_is_honoured or (test_one_rank_matches_reference and bf16) or (test_seed_steps_over_chunks and bf16)}"
read -r -a tools <<<"${BARACUDA_SANITIZE_TOOLS:-memcheck racecheck initcheck synccheck}"
read -r -a selected <<<"${BARACUDA_SANITIZE_PROGRAMS:-c_flash c_ring pytest}"
kernels='regex:flash_sdpa|ring_attention'
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"

programs=(
  "c_flash|$build/tests/c/test_flash_sdpa_gpu"
  "c_ring|$build/tests/c/test_ring_attention_gpu"
  "pytest|python -m pytest $repo/tests/python/test_flash_gpu.py $repo/tests/python/test_ring_gpu.py -q -x -p no:cacheprovider -k"
)

run_program() {  # name, command..., with the pytest subset as the last argument where it applies
  local name="$1"
  shift
  if [ "$name" = pytest ]; then "$@" "$subset"; else "$@"; fi
}

# CUDA API errors count for the C tests (the library's own calls). Under pytest, cuda-core probes
# driver entry points that this driver lacks (cuGetProcAddress: invalid argument) on purpose, so
# there only the device-side checks are counted.
api_errors() { if [ "$1" = pytest ]; then echo no; else echo explicit; fi; }
# Under pytest, torch's own kernels run too; only baracuda's kernels are checked there.
kernel_filter() { if [ "$1" = pytest ]; then echo --kernel-name kns=baracuda; fi; }
# initcheck runs on the C tests only: their inputs come from cudaMemcpy, which it tracks. Under
# pytest it cannot tell torch's reads of its allocator's padding from ours without the kernel
# filter, and with it the writes of torch's unchecked kernels go untracked.
skips_tool() { [ "$1" = pytest ] && [ "$2" = initcheck ]; }

status=0
for entry in "${programs[@]}"; do
  name="${entry%%|*}"
  [[ " ${selected[*]} " == *" $name "* ]] || continue
  read -r -a command <<<"${entry#*|}"
  # Kernels the program launches: ncu lists each profiled launch of a baracuda kernel
  # (BARACUDA_SANITIZE_COUNT=0 skips the count on a rerun).
  launches=uncounted
  if [ "${BARACUDA_SANITIZE_COUNT:-1}" = 1 ]; then
    run_program "$name" ncu --kernel-name "$kernels" --metrics launch__grid_size --csv \
      --print-summary none --target-processes all "${command[@]}" >"$out/$name.ncu.csv" \
      2>"$out/$name.ncu.log"
    launches=$(grep -cE '"launch__grid_size"' "$out/$name.ncu.csv" || true)
  fi
  for tool in "${tools[@]}"; do
    if skips_tool "$name" "$tool"; then
      printf '%-10s %-8s skipped (see skips_tool)\n' "$tool" "$name" | tee -a "$summary"
      continue
    fi
    log="$out/$name.$tool.log"
    run_program "$name" compute-sanitizer --tool "$tool" --target-processes all \
      --report-api-errors "$(api_errors "$name")" $(kernel_filter "$name") --print-limit 20 \
      "${command[@]}" >"$log" 2>&1
    program_status=$?
    errors=$(grep -oE 'ERROR SUMMARY: [0-9]+ errors?$' "$log" | awk '{sum += $3} END {print sum + 0}')
    printf '%-10s %-8s errors %-4s baracuda kernels %-6s exit %s\n' "$tool" "$name" "$errors" \
      "$launches" "$program_status" | tee -a "$summary"
    if [ "$errors" != 0 ] || [ "$program_status" != 0 ]; then status=1; fi
  done
done
exit "$status"
