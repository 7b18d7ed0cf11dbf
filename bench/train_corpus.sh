#!/usr/bin/env bash
# A GPT trained on a real corpus Debian ships (the fortunes package: 43 files, 2.6 MB of
# English text), tokenized with GPT-2's vocabulary: the validation loss against the unigram
# entropy of the training tokens, on one device, a 2x2 mesh and a 4-stage pipeline.
# Usage: bench/train_corpus.sh [STEPS] (from the repository root, after a release build and
# `ctest -R data.gpt2_reference`, which fetches GPT-2's vocabulary).
set -euo pipefail
steps="${1:-300}"
alpa="${ALPA:-build/release/src/alpa}"
gpt2="${GPT2:-build/release/fixtures/gpt2/package}"
corpus=/usr/share/games/fortunes
[ -d "$corpus" ] || { echo "install Debian's fortunes package"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
files=$(ls "$corpus"/* | grep -v '\.dat$\|\.u8$')
"$alpa" data prepare --vocab "$gpt2/encoder.json" --merges "$gpt2/vocab.bpe" --out "$work/ds" \
  $files --json >"$work/prep.json"
common=(--data "$work/ds" --vocab 50257 --steps "$steps" --batch 16 --seq 64 --lr 0.003
        --lr-schedule cosine --warmup-steps 20 --min-lr 3e-4 --clip-grad 1.0
        --eval-every "$steps" --eval-batches 16 --threads 1 --json)
python3 - "$work/prep.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
print(f"corpus: {p.get('documents')} documents, {p.get('train_tokens')} training tokens, "
      f"{p.get('validation_tokens')} held out; unigram entropy {p['unigram_entropy_nats']:.3f} nats/token")
PY
printf '%-20s %8s %9s %9s %8s %9s\n' plan "loss@1" "loss@end" "val@end" "s/step" "data/step"
for plan in "one device:" "2x2 mesh:--mesh 2x2" "4-stage pipeline:--devices 4 --micro-batches 2 --space inter-only --pipeline-layers 4 --stage-imbalance 1e9"; do
  name="${plan%%:*}"; flags="${plan#*:}"
  "$alpa" train "${common[@]}" $flags >"$work/run.json"
  python3 - "$work/run.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<20} {r['losses'][0]:8.4f} {r['losses'][-1]:9.4f} "
      f"{r['val_losses'][-1]['loss']:9.4f} {r['step_time_s']:8.4f} "
      f"{100 * r.get('data_time_fraction', 0):8.2f}%")
PY
done
