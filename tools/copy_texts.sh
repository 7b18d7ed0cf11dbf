# shellcheck shell=bash
# Sourced by the tokenizer reference scripts. copy_texts DIR ARRAY FILES... copies each file into
# DIR as N-name and appends the copies' absolute paths to the array named ARRAY. The references
# are encoded from the copies and the tests read the copies too, so a source file edited while
# the tests run does not make them differ.
copy_texts() {
  local dir="$1"
  local -n into="$2"
  shift 2
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local f copy
  for f in "$@"; do
    copy="$dir/${#into[@]}-$(basename "$f")"
    cp "$f" "$copy"
    into+=("$copy")
  done
}
