#!/usr/bin/env bash
# The main job: install what is needed, build, and run `alpa demo` (a tiny GPT trained on
# this machine). Extra arguments go to `alpa demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
exec build/release/src/alpa demo "$@"
