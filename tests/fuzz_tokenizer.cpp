// libFuzzer target (built with clang when available; ctest runs it for OURO_FUZZ_SECONDS):
// for arbitrary bytes, invalid UTF-8 included,
//   - decode(encode(x)) == x under the gpt2 and gpt4 split patterns, with and without
//     special-token recognition;
//   - the two merge strategies (linear scan, heap) give the same ids for every piece.
// The tokenizers are trained at start-up on a fixed multilingual text, so the target needs no
// files and every run uses the same vocabularies.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "ouro/tokenizer.h"
#include "tokenizer/bpe_merge.h"
#include "tokenizer/tokenizer_impl.h"

namespace {

std::string training_text() {
  std::string t;
  const char* lines[] = {
      "In the beginning God created the heaven and the earth. ",
      "And the earth was without form, and void; and darkness was upon the face of the deep.\n",
      "Les élèves n'ont pas été à l'école. Über Größe und Maß: naïve café, señor.\n",
      "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.\n",
      "Emoji 😀🎉👍🏽 and symbols ∑∫≈ ±×÷ — “quotes” ‘single’\n",
      "int main(int argc, char** argv) {\n\treturn argc > 1 ? 0 : 1;\n}\n",
      "    indented   runs\t\tof\t whitespace  \n\n\n   and 1234567890 digits 3.14159\n",
      "I'm sure you'll see they've said it's what we'd DO, DON'T YOU'RE\n",
  };
  for (int rep = 0; rep < 4; ++rep)
    for (const char* l : lines) t += l;
  return t;
}

struct Fixture {
  std::vector<ouro::Tokenizer> toks;
  Fixture() {
    const std::string text = training_text();
    for (const char* pat : {ouro::kGpt2Pattern, ouro::kGpt4Pattern}) {
      ouro::BpeTrainOptions opt;
      opt.vocab_size = 600;
      opt.pattern = pat;
      opt.specials = {ouro::kEndOfText, "<|pad|>"};
      opt.threads = 1;
      toks.push_back(ouro::train_bpe_texts({text}, opt));
    }
  }
};

[[noreturn]] void die(const char* what, std::string_view in) {
  std::fprintf(stderr, "fuzz_tokenizer: %s (input of %zu bytes)\n", what, in.size());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Fixture fx;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  for (const auto& tk : fx.toks) {
    const auto ids = tk.encode(in);
    for (uint32_t id : ids)
      if (id >= tk.n_ranks()) die("ordinary encoding produced a special token", in);
    if (tk.decode(ids) != in) die("decode(encode(x)) != x", in);
    if (tk.decode(tk.encode_with_specials(in)) != in) die("decode(encode_with_specials(x)) != x", in);
  }
  // Both merge strategies on every piece of the input.
  const auto& im = *fx.toks[0].impl();
  std::vector<uint32_t> a, b;
  im.pre->split(in, 0, in.size(), [&](size_t off, size_t len) {
    a.clear();
    b.clear();
    ouro::tok::bpe_merge_linear(data + off, len, im.ranks, a);
    ouro::tok::bpe_merge_heap(data + off, len, im.ranks, b);
    if (a != b) die("linear and heap merges disagree", in);
  });
  return 0;
}
