// `ouro tokenize`: text on stdin -> a JSON array of ids on stdout, or (--decode) the reverse.
#include <cstdio>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "ouro/error.h"
#include "ouro/tokenizer.h"

namespace ouro::cli {

namespace {

// In 1 MB blocks: a character at a time through std::cin (synced with stdio) spent more time
// than encoding the text did.
std::string read_stdin() {
  std::string s;
  std::vector<char> block(1 << 20);
  for (;;) {
    const size_t got = std::fread(block.data(), 1, block.size(), stdin);
    s.append(block.data(), got);
    if (got < block.size()) break;
  }
  OURO_CHECK(!std::ferror(stdin), "tokenize: error reading stdin");
  return s;
}

void write_stdout(std::string_view s) {
  OURO_CHECK(std::fwrite(s.data(), 1, s.size(), stdout) == s.size() && std::fflush(stdout) == 0,
             "tokenize: error writing stdout");
}

}  // namespace

void add_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Encode stdin to a JSON array of token ids (or --decode one)");
  struct Opts {
    std::string tokenizer;
    bool decode = false, specials = false;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--tokenizer,-t", o->tokenizer, "Ranks file, or GPT-2's directory / encoder.json")->required();
  cmd->add_flag("--decode,-d", o->decode, "Read a JSON array of ids, write the text");
  cmd->add_flag("--allow-special", o->specials, "Encode special-token text (e.g. <|endoftext|>) as the special id");
  cmd->add_option("--threads", o->threads, "Encoding threads (0 = all cores)");
  cmd->callback([o] {
    const Tokenizer tk = Tokenizer::load(o->tokenizer);
    const std::string in = read_stdin();
    if (o->decode) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(in);
      } catch (const nlohmann::json::exception& e) {
        fail("tokenize --decode: stdin is not JSON: {}", e.what());
      }
      OURO_CHECK(j.is_array(), "tokenize --decode: stdin must hold a JSON array of ids");
      std::vector<uint32_t> ids;
      ids.reserve(j.size());
      for (size_t i = 0; i < j.size(); ++i) {
        OURO_CHECK(j[i].is_number_unsigned() && j[i].get<uint64_t>() <= UINT32_MAX,
                   "tokenize --decode: element {} ({}) is not a token id", i, j[i].dump());
        ids.push_back(j[i].get<uint32_t>());
      }
      write_stdout(tk.decode(ids));
      return;
    }
    const auto ids = o->specials ? tk.encode_with_specials(in, o->threads) : tk.encode(in, o->threads);
    std::string out = "[";
    out.reserve(ids.size() * 6 + 2);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ", ";
      out += std::to_string(ids[i]);
    }
    out += "]\n";
    write_stdout(out);
  });
}

}  // namespace ouro::cli
