// Suggestions for misspelled names: the candidate closest to a word by edit distance, the one
// rule every "did you mean" of the project follows (text IR ops and attributes, cluster and
// plan fields).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace alpa {

// Levenshtein distance: insertions, deletions and substitutions of one character.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `word`, if it is near enough to be a misspelling (at most 2 edits,
// or a third of the word's length); otherwise "".
std::string closest_match(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace alpa
