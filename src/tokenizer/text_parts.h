// Small text utilities shared by encoding and training: cutting a text at special-token
// occurrences, and reading a whole file.
#pragma once
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace ouro::tok {

// text = parts[0].before + specials[parts[0].special] + parts[1].before + ... ; the last part's
// special is -1. Occurrences are taken leftmost first, the longest when several start at the
// same byte.
struct SpecialSplit {
  std::string_view before;
  int special = -1;
};
std::vector<SpecialSplit> split_at_specials(std::string_view text,
                                            const std::vector<std::string_view>& specials);

// The file's bytes; errors name the file and say who wanted it ("tokenizer train: ...").
std::string read_file_text(const std::filesystem::path& path, std::string_view who);
// The file opened for reading in binary, with the same errors.
std::ifstream open_file(const std::filesystem::path& path, std::string_view who);

}  // namespace ouro::tok
