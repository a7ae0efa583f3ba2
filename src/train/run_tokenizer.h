// Which tokenizer turns a model's ids into text. A run trained with data.tokenizer keeps a copy
// of it as run.out_dir/tokenizer.tiktoken (+ .json), so `ouro sample --init CHECKPOINT` finds it
// without being told; byte-level models (257 tokens) need none.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ouro/tokenizer.h"

namespace ouro {

constexpr const char* kRunTokenizerFile = "tokenizer.tiktoken";

// `path` when given; else tokenizer.tiktoken in the model's directory or up to two levels above
// it (out_dir/checkpoints/step_N -> out_dir); else GPT-2's vocab.json + merges.txt in a Hugging
// Face directory; else byte-level when vocab_size is 257. Errors: a tokenizer with more ids than
// the model has, or a model of another vocabulary with no tokenizer found.
Tokenizer find_model_tokenizer(const std::string& path, const std::filesystem::path& model,
                               int vocab_size);

// The tokenizer a training run's config names (data.tokenizer), checked against
// model.vocab_size and copied into out_dir (when out_dir is not empty). With no data.tokenizer:
// byte-level for a 257-token model, none otherwise (data prepared elsewhere, e.g. llm.c shards:
// training needs no tokenizer, only text samples do).
std::optional<Tokenizer> load_run_tokenizer(const std::string& path, int vocab_size,
                                            const std::filesystem::path& out_dir);

// Generated ids as text: ids the tokenizer does not know (a model's vocabulary may be larger)
// are dropped, and so is a final <|endoftext|> (where sampling stopped).
std::string decode_sample(const Tokenizer& tk, const std::vector<int>& ids);

}  // namespace ouro
