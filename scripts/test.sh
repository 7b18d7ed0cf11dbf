#!/usr/bin/env bash
# Install what is needed (including the PyTorch reference), build, and run the test suite.
# Extra arguments go to ctest (e.g. -R Gpt).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release "$@"
