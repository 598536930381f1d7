#!/usr/bin/env bash
# Kernel variants side by side in one GPU call: the working tree's library ("base"), then one
# build per patch of the library's sources (`git diff main...BRANCH -- libbaracuda cmake`), each
# swapped in turn into the installed baracuda package, tested and benchmarked there. For A/B
# measurements of kernel changes under a device-time budget. Run it from the repository root
# after benchmarks/device_run.sh in the same call (baracuda installed).
#
#   bash benchmarks/compare_kernels.sh [PATCH...] [-- bench flash arguments...]
#   e.g. bash benchmarks/compare_kernels.sh v9.patch v10.patch -- --dtypes bf16 --seqlens 1k,8k
#
# Per build, in $OUT (the device tool's output folder) or build/compare: <name>.json (the bench),
# <name>.tests.log and <name>.build.log, <name> being "base" or the patch's file name without its
# extension; summary.txt has one line per build. BARACUDA_COMPARE_TESTS holds the pytest
# arguments run on each build (default: the flash and ring GPU tests; "none" skips them),
# BARACUDA_COMPARE_BENCH=0 skips the bench, and BARACUDA_CUDA_ARCHITECTURES (default 90a) and
# BARACUDA_HEAD_DIM_BUCKETS narrow the builds. The installed library is put back at the end.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=benchmarks/device_env.sh
. "$repo/benchmarks/device_env.sh"
out="${OUT:-$repo/build/compare}"
mkdir -p "$out"
patches=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  patches+=("$(cd "$(dirname "$1")" && pwd)/$(basename "$1")")
  shift
done
[ "${1:-}" = "--" ] && shift
bench_arguments=("$@")
tests="${BARACUDA_COMPARE_TESTS:-tests/python/test_flash_gpu.py tests/python/test_ring_gpu.py}"
summary="$out/summary.txt"
: >"$summary"

package="$(python3 -c 'import os, baracuda; print(os.path.dirname(baracuda.__file__))')" || {
  echo "compare_kernels: baracuda is not installed (run benchmarks/device_run.sh first)" >&2
  exit 1
}
installed="$package/libbaracuda.so"
backup="$(mktemp)"
cp "$installed" "$backup"
trap 'cp "$backup" "$installed"; rm -f "$backup"' EXIT

# The library of the sources in $2, built into $repo/build/compare-$1.
build() {
  local name="$1" sources="$2" build_dir="$repo/build/compare-$1"
  cmake -S "$sources" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBARACUDA_BUILD_TESTS=OFF \
    -DBARACUDA_CUDA_ARCHITECTURES="${BARACUDA_CUDA_ARCHITECTURES:-90a}" \
    -DBARACUDA_HEAD_DIM_BUCKETS="${BARACUDA_HEAD_DIM_BUCKETS:-64;96;128;192;256}" &&
    cmake --build "$build_dir" --target baracuda
}

# Tests and bench of build $1 (library in $repo/build/compare-$1).
measure() {
  local name="$1" library tests_status=skipped bench_status=skipped
  library="$(find "$repo/build/compare-$name/libbaracuda" -maxdepth 1 -name 'libbaracuda.so.*.*.*')"
  cp -L "$library" "$installed"
  if [ "$tests" != "none" ]; then
    # shellcheck disable=SC2086  # the variable holds several pytest arguments
    (cd "$repo" && python3 -m pytest $tests -q -p no:cacheprovider) >"$out/$name.tests.log" 2>&1
    tests_status="exit $? ($(tail -n 1 "$out/$name.tests.log"))"
  fi
  if [ "${BARACUDA_COMPARE_BENCH:-1}" != 0 ]; then
    python3 -m baracuda bench flash "${bench_arguments[@]}" --out "$out/$name.json" \
      >"$out/$name.bench.txt" 2>"$out/$name.bench.log"
    bench_status="exit $?"
  fi
  printf '%-24s tests %s; bench %s\n' "$name" "$tests_status" "$bench_status" | tee -a "$summary"
}

if build base "$repo" >"$out/base.build.log" 2>&1; then
  measure base
else
  echo "base: build failed (base.build.log)" | tee -a "$summary"
fi
for patch in "${patches[@]}"; do
  name="$(basename "${patch%.*}")"
  sources="$repo/build/compare-sources-$name"
  rm -rf "$sources"
  mkdir -p "$sources"
  cp -r "$repo/CMakeLists.txt" "$repo/cmake" "$repo/libbaracuda" "$sources/"
  if ! (cd "$sources" && patch -p1 --quiet <"$patch") >"$out/$name.build.log" 2>&1 ||
    ! build "$name" "$sources" >>"$out/$name.build.log" 2>&1; then
    echo "$name: patch or build failed ($name.build.log)" | tee -a "$summary"
    continue
  fi
  measure "$name"
done
