#!/usr/bin/env bash
# Installs baracuda with its test extras into a virtual environment, builds the C tests, and
# runs ctest and pytest. GPU tests run where a CUDA device is present and skip elsewhere.
#
#   bash tests/run.sh
#
# BARACUDA_CUDA_ARCHITECTURES / BARACUDA_HEAD_DIM_BUCKETS narrow the build (see README).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="${BARACUDA_VENV:-$repo/.venv}"
jobs="$(nproc 2>/dev/null || echo 2)"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$jobs}"

step() { printf '\n==> %s\n' "$*"; }

step "virtual environment: $venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --quiet --upgrade pip

step "install baracuda with its test extras (builds libbaracuda and the extension)"
mkdir -p build
if ! python -m pip install --verbose ".[test]" >build/pip-install.log 2>&1; then
  tail -n 60 build/pip-install.log
  echo "pip install failed; the whole log is build/pip-install.log" >&2
  exit 1
fi
grep -E "^Successfully installed" build/pip-install.log || true
python -c "import baracuda; print('baracuda', baracuda.__version__, 'from', baracuda.__file__)"

step "C tests (ctest)"
# The C build finds the CuTe / CUTLASS headers of the hopper kernels in this environment's
# nvidia-cutlass wheel (headers only: its Python dependencies are not needed).
python -m pip install --quiet --no-deps "nvidia-cutlass==4.2.0.0"
cmake -S . -B build/ctest -DCMAKE_BUILD_TYPE=Release \
  -DBARACUDA_CUDA_ARCHITECTURES="${BARACUDA_CUDA_ARCHITECTURES:-80;90a}" \
  -DBARACUDA_HEAD_DIM_BUCKETS="${BARACUDA_HEAD_DIM_BUCKETS:-64;96;128;192;256}" >/dev/null
cmake --build build/ctest
ctest --test-dir build/ctest --output-on-failure

step "Python tests (pytest)"
# PyTorch for the tests that need torch but no GPU (the launcher over gloo, the torch adapter's
# CPU checks), when the environment lacks it: 2.13.0, whose CPU build the CI machine holds (on
# a machine without that wheel pip fetches a CUDA build of several GB; set
# BARACUDA_TEST_INSTALL_TORCH=0 to skip, and those tests skip).
if [ "${BARACUDA_TEST_INSTALL_TORCH:-1}" != 0 ] && ! python -c "import torch" >/dev/null 2>&1; then
  python -m pip install --quiet "torch==2.13.0" || echo "torch not installed: its CPU tests skip"
fi
# JAX's CPU build for the JAX adapter's checks without a GPU (shape inference, refusals, the
# call lowered for CUDA); BARACUDA_TEST_INSTALL_JAX=0 skips it, and those tests skip.
if [ "${BARACUDA_TEST_INSTALL_JAX:-1}" != 0 ] && ! python -c "import jax" >/dev/null 2>&1; then
  python -m pip install --quiet "jax>=0.5" || echo "jax not installed: its CPU tests skip"
fi
# pytest exits 5 when it collected no test: that is a failure here too.
python -m pytest tests/python -ra -q "$@"
