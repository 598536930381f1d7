#!/usr/bin/env bash
# One call on a GPU machine that already has nvcc, CMake, Cython, scikit-build-core and
# PyTorch: build and install baracuda, run the C and Python GPU suites, then the benchmark.
# Logs and the bench JSON go to $OUT (the device tool's output folder) or build/device-out.
#
#   bash benchmarks/device_run.sh [bench arguments...]     e.g. ring --quick
set -uo pipefail
out="${OUT:-build/device-out}"
mkdir -p "$out"
# shellcheck source=benchmarks/device_env.sh
. "$(dirname "${BASH_SOURCE[0]}")/device_env.sh"
# The NCCL-present checks of the nccl_loader ctest, against the system's NCCL when there is one.
export BARACUDA_TEST_NCCL_LIBRARY="${BARACUDA_TEST_NCCL_LIBRARY:-$(
  ldconfig -p 2>/dev/null | grep -o '/.*libnccl\.so\.2$' | head -n 1)}"
bench_seconds="${BARACUDA_BENCH_SECONDS:-330}"  # 0 skips the bench

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv |
  tee "$out/gpu.txt"

echo "==> build and install"
if ! python3 -m pip install --no-build-isolation --no-deps -v . >"$out/pip.log" 2>&1; then
  tail -n 40 "$out/pip.log"
  exit 1
fi
if ! { cmake -S . -B build/device -G Ninja -DCMAKE_BUILD_TYPE=Release &&
       cmake --build build/device; } >"$out/cmake.log" 2>&1; then
  tail -n 40 "$out/cmake.log"
  exit 1
fi

echo "==> ctest"
ctest --test-dir build/device --output-on-failure >"$out/ctest.log" 2>&1
ctest_status=$?
grep -E "tests passed|tests failed|Skipped|Failed|\*\*\*" "$out/ctest.log"
grep -hE "passed, .* failed" build/device/Testing/Temporary/LastTest.log

echo "==> pytest"
python3 -m pytest tests/python -q -ra -p no:cacheprovider >"$out/pytest.log" 2>&1
pytest_status=$?
tail -n 15 "$out/pytest.log"

if [ "$bench_seconds" -gt 0 ]; then
  echo "==> bench (at most ${bench_seconds} s; an interrupted run keeps the cases measured)"
  timeout -s INT "$bench_seconds" python3 -m baracuda bench "$@" --out "$out/bench.json" \
    2>"$out/bench-progress.log" | tee "$out/bench.txt"
  tail -n 2 "$out/bench-progress.log"
fi

echo "ctest exit ${ctest_status}, pytest exit ${pytest_status}"
[ "$ctest_status" -eq 0 ] && [ "$pytest_status" -eq 0 ]
