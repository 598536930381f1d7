#!/usr/bin/env bash
# Lint and format checks, fast and before any build: ruff (lint + format) on the Python sources,
# clang-format on the C, C++ and CUDA sources (the *.in instance templates excepted). The tools
# are pinned and installed into their own virtual environment.
#
#   bash tests/lint.sh          check (what .ci/run does)
#   bash tests/lint.sh --fix    apply the fixes and the formatting
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="${BARACUDA_LINT_VENV:-$repo/build/lint-venv}"
if [ ! -x "$venv/bin/ruff" ] || [ ! -x "$venv/bin/clang-format" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "ruff==0.17.6" "clang-format==23.1.5"
fi
mapfile -t native < <(git ls-files '*.c' '*.h' '*.cpp' '*.cu' '*.cuh')

if [ "${1:-}" = --fix ]; then
  "$venv/bin/ruff" format .
  "$venv/bin/clang-format" -i "${native[@]}"
  # What ruff cannot fix safely is listed, for a hand to fix.
  exec "$venv/bin/ruff" check --fix .
fi
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/clang-format" --dry-run --Werror "${native[@]}"
echo "lint: ruff and clang-format clean (${#native[@]} C/C++/CUDA files)"
