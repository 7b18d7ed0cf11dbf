#!/bin/sh
# Installs the build tree into a temporary prefix, builds examples/cpp against it (only
# find_package(alpa) and the prefix: no path into this tree), and runs the program.
# Usage: cpp_package_test.sh BUILD_DIR EXAMPLE_DIR CXX
set -eu
build=$1 example=$2 cxx=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log"
test -f "$tmp/prefix/lib/cmake/alpa/alpaConfig.cmake"
test -f "$tmp/prefix/include/alpa/compile/compile.h"
test -f "$tmp/prefix/include/alpa/ir/ops.def"
test -x "$tmp/prefix/bin/alpa"
cmake -S "$example" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/configure.log" ||
  { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
# The program was compiled against the installed headers, not the source tree's.
grep -q "$tmp/prefix/include" "$tmp/build/compile_commands.json"
if grep -q "$(dirname "$example")/../src" "$tmp/build/compile_commands.json"; then
  echo "the example was compiled against the source tree"; exit 1
fi
"$tmp/build/train_on_mesh"
