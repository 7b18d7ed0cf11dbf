#!/usr/bin/env bash
# Trains small SentencePiece models with Debian's spm_train and writes the reference ids and
# texts the SentencePiece tests compare against (Debian's spm_encode and spm_decode are the
# independent reference). Usage:
#   tools/sentencepiece_reference.sh OUT_DIR TRAIN_FILES... -- TEST_FILES...
# Writes into OUT_DIR:
#   unigram.model  unigram, the default NFKC-based normalization, byte fallback, a
#                  user-defined symbol <|sep|>, pad id 3
#   bpe.model      BPE as LLaMA's tokenizer is trained: identity normalization, whitespace
#                  kept as written, digits split, byte fallback, the user-defined <|sep|>
#   noeos.model    a unigram model without an eos piece (--eos_id=-1)
#   whitespace.txt a generated text of whitespace runs, tabs, digits and <|sep|>
#   manifest.tsv   one line per (model, test text): model, text, ids file, decoded file, where
#                  the ids file holds spm_encode --output_format=id of each line of the text
#                  and the decoded file spm_decode --input_format=id of those ids
set -euo pipefail
out="$1"
shift
train=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  train+=("$1")
  shift
done
[ $# -gt 0 ] && shift
# shellcheck source=tools/copy_texts.sh
source "$(dirname "$0")/copy_texts.sh"
tests=()
copy_texts "$out/texts" tests "$@"
for tool in spm_train spm_encode spm_decode; do
  command -v "$tool" >/dev/null ||
    { echo "sentencepiece_reference: $tool is missing (apt-get install sentencepiece)" >&2; exit 1; }
done
mkdir -p "$out"
cat "${train[@]}" >"$out/corpus.txt"

common=(--input="$out/corpus.txt" --vocab_size=1000 --character_coverage=1.0 --byte_fallback
        --user_defined_symbols='<|sep|>' --num_threads=1 --minloglevel=2)
spm_train "${common[@]}" --model_prefix="$out/unigram" --model_type=unigram --pad_id=3 \
  >"$out/unigram.log" 2>&1
spm_train "${common[@]}" --model_prefix="$out/bpe" --model_type=bpe \
  --normalization_rule_name=identity --remove_extra_whitespaces=false --split_digits \
  --allow_whitespace_only_pieces >"$out/bpe.log" 2>&1
spm_train --input="$out/corpus.txt" --vocab_size=300 --num_threads=1 --minloglevel=2 \
  --model_prefix="$out/noeos" --eos_id=-1 >"$out/noeos.log" 2>&1

# Whitespace runs, tabs, leading and trailing spaces, empty lines, digits, the user symbol.
{
  printf 'two  spaces, three   spaces,\ttab,\t\ttwo tabs\n'
  printf '    leading spaces and trailing ones    \n\n'
  printf '\n   \n\t\n'
  printf 'x = [1, 22, 333, 4444]  # digits 0123456789 and 3.14159\n'
  printf 'first<|sep|>second <|sep|> third<|sep|><|sep|>\n'
  printf 'mixed \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e  and \xf0\x9f\x99\x82\xf0\x9f\x9a\x80 emoji\t\tend\n'
} >"$out/whitespace.txt"
tests+=("$out/whitespace.txt")

: >"$out/manifest.tsv"
for model in unigram bpe; do
  mkdir -p "$out/$model"
  i=0
  for text in "${tests[@]}"; do
    ids="$out/$model/$i.ids"
    spm_encode --model="$out/$model.model" --output_format=id <"$text" >"$ids"
    spm_decode --model="$out/$model.model" --input_format=id <"$ids" >"$out/$model/$i.decoded"
    printf '%s\t%s\t%s\t%s\n' "$out/$model.model" "$text" "$ids" "$out/$model/$i.decoded" \
      >>"$out/manifest.tsv"
    i=$((i + 1))
  done
done
echo "sentencepiece_reference: 3 models, ${#tests[@]} texts encoded by spm_encode into $out"
