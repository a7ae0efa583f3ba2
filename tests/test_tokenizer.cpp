// Byte-level BPE: tiktoken parity (GPT-2's vocabulary on a 4.7 MB mixed corpus; tokenizers
// trained by ouro and read by tiktoken), deterministic training, round trips of arbitrary bytes,
// thread-count independence, the file formats and their errors, and the CLI.
// Fixtures: tests/fixtures/tokenizer, made by `tools/make_fixtures.py --tokenizer`.
#include <lzma.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ouro/data.h"
#include "ouro/error.h"
#include "ouro/tokenizer.h"
#include "tokenizer/base64.h"
#include "tokenizer/bpe_merge.h"
#include "tokenizer/tokenizer_impl.h"

namespace fs = std::filesystem;
using namespace ouro;

namespace {

const fs::path kDir = fs::path(OURO_FIXTURES) / "tokenizer";

struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() /
           ("ouro_test_tok_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, std::string_view s) {
  std::ofstream f(p, std::ios::binary);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

std::string read_xz(const fs::path& p) {
  const std::string in = read_file(p);
  EXPECT_FALSE(in.empty()) << p;
  lzma_stream s = LZMA_STREAM_INIT;
  EXPECT_EQ(lzma_stream_decoder(&s, UINT64_MAX, 0), LZMA_OK);
  std::string out;
  char buf[1 << 16];
  s.next_in = reinterpret_cast<const uint8_t*>(in.data());
  s.avail_in = in.size();
  lzma_ret rc = LZMA_OK;
  while (rc == LZMA_OK) {
    s.next_out = reinterpret_cast<uint8_t*>(buf);
    s.avail_out = sizeof buf;
    rc = lzma_code(&s, LZMA_FINISH);
    out.append(buf, sizeof buf - s.avail_out);
  }
  lzma_end(&s);
  EXPECT_EQ(rc, LZMA_STREAM_END) << p;
  return out;
}

std::vector<uint32_t> read_ids_u16(const fs::path& p) {
  const std::string raw = read_xz(p);
  std::vector<uint32_t> ids(raw.size() / 2);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<uint8_t>(raw[2 * i]) | static_cast<uint32_t>(static_cast<uint8_t>(raw[2 * i + 1])) << 8;
  return ids;
}

nlohmann::json manifest() { return nlohmann::json::parse(read_file(kDir / "manifest.json")); }

const std::string& corpus() {
  static const std::string c = read_xz(kDir / "corpus.txt.xz");
  return c;
}

// GPT-2's encoder.json + vocab.bpe, decompressed into a directory once per process.
const Tokenizer& gpt2() {
  static const Tokenizer tk = [] {
    static TempDir dir;
    write_file(dir / "encoder.json", read_xz(kDir / "gpt2/encoder.json.xz"));
    write_file(dir / "vocab.bpe", read_xz(kDir / "gpt2/vocab.bpe.xz"));
    return Tokenizer::load(dir.path);
  }();
  return tk;
}

template <typename F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ouro::Error thrown";
  return "";
}

size_t first_difference(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

// A small tokenizer trained on a slice of the corpus.
Tokenizer small_trained(const char* pattern = kGpt2Pattern, size_t vocab = 700) {
  BpeTrainOptions opt;
  opt.vocab_size = vocab;
  opt.pattern = pattern;
  opt.specials = {kEndOfText, "<|pad|>"};
  return train_bpe_texts({std::string_view(corpus()).substr(0, 300000)}, opt);
}

std::string random_bytes(std::mt19937& rng, size_t n) {
  // Mixed: ASCII words and spaces, valid multi-byte UTF-8 from the corpus, and raw bytes
  // (invalid UTF-8: stray continuation bytes, truncated sequences, 0xFF, surrogates).
  std::string s;
  const std::string& c = corpus();
  while (s.size() < n) {
    switch (rng() % 4) {
      case 0: s += c.substr(rng() % (c.size() - 64), rng() % 64); break;
      case 1: s += static_cast<char>(rng() % 256); break;
      case 2: s += std::string("\xed\xa0\x80 \xc3 \xf0\x9f\x98 \xff\xfe\x80").substr(rng() % 12, rng() % 6); break;
      default: s += std::string(rng() % 12, " \t\n"[rng() % 3]); break;
    }
  }
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------- base64

TEST(Base64, RoundTripAndStrictness) {
  std::mt19937 rng(1);
  for (int n = 0; n < 40; ++n) {
    std::string s(static_cast<size_t>(n), '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    auto d = tok::base64_decode(tok::base64_encode(s));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(tok::base64_encode("Ġthe"), "xKB0aGU=");
  for (const char* bad : {"A", "AB=", "A===", "AB=C", "ab$d", "QQ=A", "QR==", "QUJ="})
    EXPECT_FALSE(tok::base64_decode(bad).has_value()) << bad;
}

// ---------------------------------------------------------------------------------- GPT-2

TEST(Gpt2, LoadsEncoderJsonAndVocabBpe) {
  const Tokenizer& tk = gpt2();
  EXPECT_EQ(tk.n_ranks(), 50256u);
  EXPECT_EQ(tk.vocab_size(), 50257u);
  EXPECT_EQ(tk.eot_id(), 50256u);
  EXPECT_EQ(tk.pattern(), kGpt2Pattern);
  EXPECT_EQ(tk.encode("Hello world"), (std::vector<uint32_t>{15496, 995}));
  EXPECT_EQ(tk.token_bytes(0), "!");
  EXPECT_EQ(tk.token_bytes(50255), " gazed");
  EXPECT_EQ(tk.decode(std::vector<uint32_t>{50256}), "<|endoftext|>");
}

TEST(Gpt2, MatchesTiktokenIdForIdOnTheCorpus) {
  const std::string& text = corpus();
  const auto want = read_ids_u16(kDir / "gpt2_ids.u16.xz");
  ASSERT_GE(text.size(), 4'000'000u);
  ASSERT_EQ(want.size(), manifest()["gpt2_tokens"].get<size_t>());
  for (int threads : {1, 4}) {
    const auto got = gpt2().encode(text, threads);
    const size_t i = first_difference(got, want);
    ASSERT_EQ(i, want.size()) << threads << " thread(s): first difference at token " << i << " of "
                              << want.size() << " (ouro " << (i < got.size() ? got[i] : 0) << ", tiktoken "
                              << (i < want.size() ? want[i] : 0) << ")";
    EXPECT_EQ(got.size(), want.size());
  }
  EXPECT_EQ(gpt2().decode(want), text);
}

TEST(Gpt2, EdgesOfThePatternsMatchTiktoken) {
  // tricky.json: strings at the edges of the patterns (contractions under (?i), U+0085 and
  // U+180E, other Unicode spaces, recent letters, ...) with tiktoken's ids.
  const auto j = nlohmann::json::parse(read_file(kDir / "tricky.json"));
  const auto cases = j["cases"].get<std::vector<std::string>>();
  ASSERT_GE(cases.size(), 30u);
  const std::pair<const char*, Tokenizer> tokenizers[] = {
      {"gpt2", gpt2()},
      {"trained_gpt2", Tokenizer::load(kDir / "trained_gpt2.tiktoken")},
      {"trained_gpt4", Tokenizer::load(kDir / "trained_gpt4.tiktoken")}};
  for (const auto& [name, tk] : tokenizers) {
    const auto want = j[name].get<std::vector<std::vector<uint32_t>>>();
    ASSERT_EQ(want.size(), cases.size()) << name;
    for (size_t i = 0; i < cases.size(); ++i)
      EXPECT_EQ(tk.encode(cases[i]), want[i]) << name << ", case " << i << ": " << cases[i];
  }
}

TEST(Gpt2, ConvertedRanksFileEncodesTheSame) {
  TempDir d;
  gpt2().save(d / "gpt2.tiktoken");
  const Tokenizer back = Tokenizer::load(d / "gpt2.tiktoken");
  EXPECT_EQ(back.vocab_size(), 50257u);
  EXPECT_EQ(back.specials(), gpt2().specials());
  const std::string_view slice = std::string_view(corpus()).substr(1'000'000, 200'000);
  EXPECT_EQ(back.encode(slice), gpt2().encode(slice));
}

// ---------------------------------------------------------------------------------- training

class Trained : public ::testing::TestWithParam<const char*> {};

TEST_P(Trained, RetrainsToTheCommittedRanksAndMatchesTiktokenOnHeldOutText) {
  const std::string name = GetParam();
  const auto m = manifest();
  const size_t split = m["split"].get<size_t>();
  const std::string_view text = corpus();
  BpeTrainOptions opt;
  opt.vocab_size = m["trained"][name]["vocab"].get<size_t>();
  opt.pattern = pattern_by_name(name);
  const Tokenizer committed = Tokenizer::load(kDir / ("trained_" + name + ".tiktoken"));
  ASSERT_EQ(committed.vocab_size(), opt.vocab_size);
  ASSERT_EQ(committed.pattern(), opt.pattern);
  // Deterministic whatever the thread count, and the same as when the fixture was made.
  for (int threads : {1, 2}) {
    opt.threads = threads;
    const Tokenizer tk = train_bpe_texts({text.substr(0, split)}, opt);
    ASSERT_EQ(tk.n_ranks(), committed.n_ranks());
    for (uint32_t r = 0; r < tk.n_ranks(); ++r)
      ASSERT_EQ(tk.token_bytes(r), committed.token_bytes(r)) << "rank " << r << ", " << threads << " thread(s)";
    EXPECT_EQ(tk.specials(), committed.specials());
  }
  const auto want = read_ids_u16(kDir / ("heldout_trained_" + name + "_ids.u16.xz"));
  ASSERT_EQ(want.size(), m["trained"][name]["heldout_tokens"].get<size_t>());
  const auto got = committed.encode(text.substr(split), 2);
  const size_t i = first_difference(got, want);
  ASSERT_EQ(i, want.size()) << "first difference at token " << i;
  EXPECT_EQ(got.size(), want.size());
}

INSTANTIATE_TEST_SUITE_P(Patterns, Trained, ::testing::Values("gpt2", "gpt4"));

TEST(Training, TiesGoToTheLowestIds) {
  // Equal counts: the pair with the lower left id (then right id) merges first.
  BpeTrainOptions opt;
  opt.vocab_size = 256 + 2 + 1;
  const Tokenizer tk = train_bpe_texts({"cd ab cd ab"}, opt);
  EXPECT_EQ(tk.token_bytes(256), " a");  // (" ", a), (a, b), (c, d) all twice: the space has the lowest id
  BpeTrainOptions opt2;
  opt2.vocab_size = 256 + 1 + 1;
  const Tokenizer t2 = train_bpe_texts({"cd\nab\ncd\nab"}, opt2);
  EXPECT_EQ(t2.token_bytes(256), "ab");
}

TEST(Training, SpecialTokensAreNotLearnedAndTakeTheLastIds) {
  BpeTrainOptions opt;
  opt.vocab_size = 300;
  opt.specials = {kEndOfText, "<|sep|>"};
  std::string text;
  for (int i = 0; i < 50; ++i) text += "hello world<|endoftext|><|sep|>";
  const Tokenizer tk = train_bpe_texts({text}, opt);
  EXPECT_EQ(tk.special_id(kEndOfText), tk.n_ranks());
  EXPECT_EQ(tk.special_id("<|sep|>"), tk.n_ranks() + 1);
  for (uint32_t r = 256; r < tk.n_ranks(); ++r)
    EXPECT_EQ(std::string(tk.token_bytes(r)).find('|'), std::string::npos) << tk.token_bytes(r);
}

TEST(Training, StopsWhenPairsRunOut) {
  BpeTrainOptions opt;
  opt.vocab_size = 5000;
  const Tokenizer tk = train_bpe_texts({"abc abc"}, opt);
  EXPECT_LT(tk.vocab_size(), 5000u);
  EXPECT_EQ(tk.encode(" abc").size(), 1u);
}

TEST(Training, StreamedFilesTrainLikeTheWholeText) {
  TempDir d;
  const std::string_view c = corpus();
  const std::string a(c.substr(0, 300'000)), b(c.substr(3'000'000, 200'000));
  write_file(d / "a.txt", a);
  write_file(d / "b.txt", b);
  for (const char* pat : {kGpt2Pattern, kGpt4Pattern}) {
    for (const std::vector<std::string>& specials :
         {std::vector<std::string>{kEndOfText}, std::vector<std::string>{kEndOfText, "<|a\nb|>"}}) {
      BpeTrainOptions opt;
      opt.vocab_size = 1000;
      opt.pattern = pat;
      opt.specials = specials;
      const Tokenizer whole = train_bpe_texts({a, b}, opt);
      opt.read_bytes = 4096;  // many blocks per file
      BpeTrainStats st;
      const Tokenizer streamed = train_bpe({d / "a.txt", d / "b.txt"}, opt, &st);
      EXPECT_EQ(st.input_bytes, a.size() + b.size());
      ASSERT_EQ(streamed.vocab_size(), whole.vocab_size());
      for (uint32_t r = 0; r < whole.n_ranks(); ++r) ASSERT_EQ(streamed.token_bytes(r), whole.token_bytes(r)) << r;
    }
  }
}

TEST(Training, BadInputErrors) {
  TempDir d;
  write_file(d / "empty.txt", "");
  BpeTrainOptions opt;
  EXPECT_NE(error_of([&] { train_bpe({d / "empty.txt"}, opt); }).find("empty corpus"), std::string::npos);
  EXPECT_NE(error_of([&] { train_bpe({}, opt); }).find("no input"), std::string::npos);
  EXPECT_NE(error_of([&] { train_bpe({d / "missing.txt"}, opt); }).find("missing.txt"), std::string::npos);
  EXPECT_NE(error_of([&] { train_bpe_texts({std::string_view(kEndOfText)}, opt); }).find("empty corpus"),
            std::string::npos);
  opt.vocab_size = 256;  // + <|endoftext|> needs 257
  const std::string msg = error_of([&] { train_bpe_texts({"some text"}, opt); });
  EXPECT_NE(msg.find("smaller than the 256 byte tokens + 1 special"), std::string::npos) << msg;
  opt.vocab_size = 300;
  opt.specials = {kEndOfText, kEndOfText};
  EXPECT_NE(error_of([&] { train_bpe_texts({"x"}, opt); }).find("given twice"), std::string::npos);
  EXPECT_NE(error_of([] { pattern_by_name("gpt3"); }).find("gpt3"), std::string::npos);
}

// ---------------------------------------------------------------------------------- encoding

TEST(Encoding, ArbitraryBytesRoundTrip) {
  std::mt19937 rng(7);
  for (const char* pat : {kGpt2Pattern, kGpt4Pattern}) {
    const Tokenizer tk = small_trained(pat);
    for (int i = 0; i < 300; ++i) {
      const std::string s = random_bytes(rng, rng() % 2000);
      const auto ids = tk.encode(s);
      ASSERT_EQ(tk.decode(ids), s) << "case " << i;
      for (uint32_t id : ids) ASSERT_LT(id, tk.n_ranks());
      ASSERT_EQ(tk.decode(tk.encode_with_specials(s)), s);
    }
  }
  EXPECT_EQ(gpt2().decode(gpt2().encode("\xff\xfe\xed\xa0\x80 caf\xc3")), "\xff\xfe\xed\xa0\x80 caf\xc3");
  EXPECT_TRUE(gpt2().encode("").empty());
}

TEST(Encoding, ThreadCountsAndBatchesGiveTheSameIds) {
  std::mt19937 rng(11);
  const Tokenizer tk = small_trained();
  std::string big = random_bytes(rng, 600'000);
  big += corpus().substr(0, 400'000);
  const auto one = tk.encode(big, 1);
  for (int t : {2, 3, 8}) EXPECT_EQ(tk.encode(big, t), one) << t << " threads";
  std::vector<std::string> docs;
  for (int i = 0; i < 20; ++i) docs.push_back(random_bytes(rng, rng() % 100'000));
  std::vector<std::string_view> views(docs.begin(), docs.end());
  const auto batch = tk.encode_batch(views, 4);
  ASSERT_EQ(batch.size(), docs.size());
  for (size_t i = 0; i < docs.size(); ++i) EXPECT_EQ(batch[i], tk.encode(docs[i], 1)) << "document " << i;
}

TEST(Encoding, PrefixesEndWhereTheRestCannotReach) {
  std::mt19937 rng(13);
  for (const char* pat : {kGpt2Pattern, kGpt4Pattern}) {
    const Tokenizer tk = small_trained(pat);
    int cuts = 0;
    for (int i = 0; i < 200; ++i) {
      const std::string s = random_bytes(rng, 1 + rng() % 3000);
      std::vector<uint32_t> ids;
      const size_t cut = tk.encode_prefix(s, ids);
      if (cut == 0) {
        EXPECT_TRUE(ids.empty());
        continue;
      }
      ++cuts;
      ASSERT_TRUE(s[cut - 1] == '\n' && std::isalpha(static_cast<unsigned char>(s[cut])));
      for (size_t p = cut + 1; p < s.size(); ++p)  // and the last such point
        ASSERT_FALSE(s[p - 1] == '\n' && std::isalpha(static_cast<unsigned char>(s[p]))) << p;
      const auto rest = tk.encode(std::string_view(s).substr(cut));
      ids.insert(ids.end(), rest.begin(), rest.end());
      ASSERT_EQ(ids, tk.encode(s)) << "case " << i << ", cut at " << cut;
    }
    EXPECT_GT(cuts, 50);
  }
  // Unknown patterns have no cuts: the stream keeps buffering.
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
  const Tokenizer custom(bytes, {}, R"(\S+|\s+)");
  std::vector<uint32_t> ids;
  EXPECT_EQ(custom.encode_prefix("a\nb\nc", ids), 0u);
}

TEST(Encoding, LinearAndHeapMergesAgree) {
  const Tokenizer& tk = gpt2();
  const auto& im = *tk.impl();
  std::mt19937 rng(3);
  std::vector<uint32_t> a, b;
  auto check = [&](std::string_view piece) {
    a.clear();
    b.clear();
    const auto* p = reinterpret_cast<const uint8_t*>(piece.data());
    tok::bpe_merge_linear(p, piece.size(), im.ranks, a);
    tok::bpe_merge_heap(p, piece.size(), im.ranks, b);
    ASSERT_EQ(a, b) << piece;
  };
  const std::string_view text = std::string_view(corpus()).substr(0, 300'000);
  im.pre->split(text, 0, text.size(), [&](size_t off, size_t len) { check(text.substr(off, len)); });
  for (int i = 0; i < 200; ++i) check(random_bytes(rng, 1 + rng() % 300));
}

TEST(Encoding, SpecialTokensOnlyWhenAsked) {
  const Tokenizer& tk = gpt2();
  const auto plain = tk.encode("a<|endoftext|>b");
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256u), 0);
  EXPECT_EQ(tk.decode(plain), "a<|endoftext|>b");
  EXPECT_EQ(tk.encode_with_specials("a<|endoftext|>b<|endoftext|>"),
            (std::vector<uint32_t>{tk.encode("a")[0], 50256, tk.encode("b")[0], 50256}));
  EXPECT_NE(error_of([&] { tk.decode(std::vector<uint32_t>{1, 60000}); }).find("index 1"), std::string::npos);
}

TEST(Encoding, WhitespaceFollowsTiktoken) {
  // Pieces of "\s+(?!\S)": the last space of a run goes with the next word; a run at the end of
  // the text stays whole; U+0085 is White_Space, U+180E is not.
  const Tokenizer& tk = gpt2();
  auto pieces = [&](std::string_view s) {
    std::vector<std::string> out;
    tk.impl()->pre->split(s, 0, s.size(), [&](size_t o, size_t n) { out.emplace_back(s.substr(o, n)); });
    return out;
  };
  EXPECT_EQ(pieces("a   b"), (std::vector<std::string>{"a", "  ", " b"}));
  EXPECT_EQ(pieces("a \n\n b  "), (std::vector<std::string>{"a", " \n\n", " b", "  "}));
  EXPECT_EQ(pieces("x\xc2\x85y"), (std::vector<std::string>{"x", "\xc2\x85", "y"}));
  EXPECT_EQ(pieces("x \xe1\xa0\x8ey"), (std::vector<std::string>{"x", " \xe1\xa0\x8e", "y"}));
  EXPECT_EQ(pieces("it's I'M"), (std::vector<std::string>{"it", "'s", " I", "'", "M"}));
  EXPECT_EQ(pieces("a\xff\xfe b"), (std::vector<std::string>{"a", "\xff\xfe", " b"}));
}

// ---------------------------------------------------------------------------------- files

TEST(Files, SaveLoadRoundTrip) {
  TempDir d;
  const Tokenizer tk = small_trained(kGpt4Pattern);
  tk.save(d / "t.tiktoken");
  const Tokenizer back = Tokenizer::load(d / "t.tiktoken");
  EXPECT_EQ(back.pattern(), kGpt4Pattern);
  EXPECT_EQ(back.specials(), tk.specials());
  ASSERT_EQ(back.n_ranks(), tk.n_ranks());
  for (uint32_t r = 0; r < tk.n_ranks(); ++r) ASSERT_EQ(back.token_bytes(r), tk.token_bytes(r));
  // Without a sidecar: GPT-2's pattern and <|endoftext|> after the ranks.
  fs::remove(d / "t.tiktoken.json");
  const Tokenizer bare = Tokenizer::load(d / "t.tiktoken");
  EXPECT_EQ(bare.pattern(), kGpt2Pattern);
  EXPECT_EQ(bare.eot_id(), tk.n_ranks());
}

TEST(Files, CorruptRanksNameTheLine) {
  TempDir d;
  // A valid start: the 256 single bytes, ranks 0..255.
  std::string good;
  for (int b = 0; b < 256; ++b) good += tok::base64_encode(std::string(1, static_cast<char>(b))) + " " + std::to_string(b) + "\n";
  auto load_with = [&](const std::string& tail) {
    write_file(d / "r.tiktoken", good + tail);
    return error_of([&] { Tokenizer::load(d / "r.tiktoken"); });
  };
  const std::string f = (d / "r.tiktoken").string();
  std::string m = load_with("aGk= 256\nnot*base64 257\n");
  EXPECT_NE(m.find(f + ":258: invalid base64"), std::string::npos) << m;
  m = load_with("aGk= 256\naGo= 256\n");
  EXPECT_NE(m.find(f + ":258: duplicate rank 256 (first on line 257)"), std::string::npos) << m;
  m = load_with("aGk= 256\naGo= 259\n");
  EXPECT_NE(m.find(f + ":258: gap: rank 259 follows rank 256"), std::string::npos) << m;
  m = load_with("aGk= 256\naGk= 257\n");
  EXPECT_NE(m.find(f + ":258: token 'aGk=' already has rank 256 (line 257)"), std::string::npos) << m;
  m = load_with("aGk= x\n");
  EXPECT_NE(m.find(f + ":257: rank 'x'"), std::string::npos) << m;
  m = load_with("aGk=256\n");
  EXPECT_NE(m.find(f + ":257: expected 'BASE64 RANK'"), std::string::npos) << m;
  // A missing byte token.
  write_file(d / "r.tiktoken", "YQ== 0\n");
  m = error_of([&] { Tokenizer::load(d / "r.tiktoken"); });
  EXPECT_NE(m.find("byte 0x00 has no rank"), std::string::npos) << m;
  write_file(d / "r.tiktoken", "");
  EXPECT_NE(error_of([&] { Tokenizer::load(d / "r.tiktoken"); }).find("no ranks"), std::string::npos);
  // Sidecar problems name the sidecar.
  write_file(d / "r.tiktoken", good);
  write_file(d / "r.tiktoken.json", "{\"pattern\": 3}");
  m = error_of([&] { Tokenizer::load(d / "r.tiktoken"); });
  EXPECT_NE(m.find("r.tiktoken.json: key 'pattern' must be a string"), std::string::npos) << m;
  write_file(d / "r.tiktoken.json", "{\"special_tokens\": {\"<|x|>\": 5}}");
  m = error_of([&] { Tokenizer::load(d / "r.tiktoken"); });
  EXPECT_NE(m.find("inside the ranks"), std::string::npos) << m;
  write_file(d / "r.tiktoken.json", "{\"pattern\": \"(a\"}");
  m = error_of([&] { Tokenizer::load(d / "r.tiktoken"); });
  EXPECT_NE(m.find("offset"), std::string::npos) << m;
  write_file(d / "r.tiktoken.json", "{ nope");
  EXPECT_NE(error_of([&] { Tokenizer::load(d / "r.tiktoken"); }).find("invalid JSON"), std::string::npos);
}

TEST(Files, CorruptGpt2FilesNameTheLine) {
  TempDir d;
  write_file(d / "vocab.bpe", "#version: 0.2\nĠ t\nĠt he\n");
  write_file(d / "encoder.json", "{}");
  std::string m = error_of([&] { Tokenizer::load(d.path); });
  EXPECT_NE(m.find("vocab.bpe:3: merge of 'Ġt he' needs both parts"), std::string::npos) << m;
  write_file(d / "vocab.bpe", "#version: 0.2\nĠ t\nĠt\n");
  m = error_of([&] { Tokenizer::load(d / "encoder.json"); });
  EXPECT_NE(m.find("vocab.bpe:3: expected two tokens"), std::string::npos) << m;
  write_file(d / "vocab.bpe", "#version: 0.2\nĠ t\n");
  write_file(d / "encoder.json", "{\"!\": 1}");
  m = error_of([&] { Tokenizer::load(d.path); });
  EXPECT_NE(m.find("encoder.json: \"!\" has id 1"), std::string::npos) << m;
}

// ------------------------------------------------------------------------- hostile patterns

namespace {

// A tokenizer of the 256 bytes whose sidecar holds `pattern`, saved to d and loaded back.
Tokenizer bytes_with_pattern(const TempDir& d, const std::string& pattern) {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
  Tokenizer(bytes, {{kEndOfText, 256}}, pattern).save(d / "hostile.tiktoken");
  return Tokenizer::load(d / "hostile.tiktoken");
}

}  // namespace

// Issue 21 item 1: a match PCRE2 gives up on used to throw inside the encoder's OpenMP loop
// (std::terminate, even on one thread), and catastrophic backtracking ran for minutes. It is an
// Error naming the tokenizer file, the document and the byte offset, on any thread count.
TEST(Hostile, CatastrophicBacktrackingFailsFastNamingFileAndOffset) {
  TempDir d;
  const Tokenizer tk = bytes_with_pattern(d, "(?:a|aa)+[bc]|[^a]|a");
  EXPECT_EQ(tk.source(), (d / "hostile.tiktoken").string());
  const std::string bad = "hello " + std::string(80, 'a') + " then b";
  for (int threads : {1, 2}) {
    const std::string m = error_of([&] { tk.encode(bad, threads); });
    EXPECT_NE(m.find((d / "hostile.tiktoken").string()), std::string::npos) << m;
    EXPECT_NE(m.find("byte offset 6"), std::string::npos) << m;
    EXPECT_NE(m.find("limit"), std::string::npos) << m;
  }
  // In a batch the first failing document is named, whatever the thread count.
  const std::string fine = "aab ab b c " + std::string(200'000, 'x');
  const std::vector<std::string_view> docs{fine, fine, bad, fine, bad};
  for (int threads : {1, 2, 3}) {
    const std::string m = error_of([&] { tk.encode_batch(docs, threads); });
    EXPECT_NE(m.find("document 2, byte offset 6"), std::string::npos) << m;
  }
  EXPECT_EQ(tk.encode("aab", 2), (std::vector<uint32_t>{'a', 'a', 'b'}));
  // Training splits with the same pattern inside its own OpenMP region.
  BpeTrainOptions opt;
  opt.vocab_size = 300;
  opt.pattern = "(?:a|aa)+[bc]|[^a]|a";
  opt.threads = 2;
  const std::string m = error_of([&] { train_bpe_texts({fine, bad, fine}, opt); });
  EXPECT_NE(m.find("byte offset 6"), std::string::npos) << m;
}

// The limits scale with the subject, so the known patterns' legitimate worst cases (gpt4's
// \s*[\r\n] walks a whole run of spaces) still encode.
TEST(Hostile, LongRunsUnderTheKnownPatternsStayWithinTheLimits) {
  for (const char* pattern : {kGpt2Pattern, kGpt4Pattern}) {
    std::vector<std::string> bytes;
    for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
    const Tokenizer tk(bytes, {{kEndOfText, 256}}, pattern);
    for (const std::string& text : {std::string(3'000'000, ' ') + "x", std::string(3'000'000, '7'),
                                    std::string(1'000'000, ' ') + "\n" + std::string(1'000'000, ' ') + "x"}) {
      EXPECT_EQ(tk.decode(tk.encode(text, 2)), text);
    }
  }
}

// Issue 21 item 11: a sidecar's special id of 4e9 (or 3e8: `tokenizer info` took 4 GB) made a
// table of that many entries; 2^32+5 was truncated to 5 before any check. Refused naming the
// sidecar and the key, before any table is built.
TEST(Hostile, HugeOrWrappingSpecialIdsNameTheSidecarAndKey) {
  TempDir d;
  std::string ranks;
  for (int b = 0; b < 256; ++b) ranks += tok::base64_encode(std::string(1, static_cast<char>(b))) + " " + std::to_string(b) + "\n";
  write_file(d / "r.tiktoken", ranks);
  const std::string side = (d / "r.tiktoken.json").string();
  for (const char* id : {"4000000000", "300000000", "4294967301", "18446744073709551615"}) {
    write_file(d / "r.tiktoken.json", std::string("{\"special_tokens\": {\"<|x|>\": ") + id + "}}");
    const std::string m = error_of([&] { Tokenizer::load(d / "r.tiktoken"); });
    EXPECT_NE(m.find(side + ": special_tokens.<|x|> = " + id), std::string::npos) << m;
  }
  for (const char* id : {"4e9", "-5", "5.5"}) {
    write_file(d / "r.tiktoken.json", std::string("{\"special_tokens\": {\"<|x|>\": ") + id + "}}");
    const std::string m = error_of([&] { Tokenizer::load(d / "r.tiktoken"); });
    EXPECT_NE(m.find(side + ": special_tokens.<|x|> must be a non-negative integer"), std::string::npos) << m;
  }
  // GPT-2's encoder.json: an id past the ranks is a special token, with the same bound.
  write_file(d / "vocab.bpe", "#version: 0.2\n");
  write_file(d / "encoder.json", "{\"<|endoftext|>\": 4294967301}");
  const std::string m = error_of([&] { Tokenizer::load(d.path); });
  EXPECT_NE(m.find("encoder.json: \"<|endoftext|>\" has id 4294967301, above"), std::string::npos) << m;
  // The constructor enforces the bound for tokenizers built in memory too.
  std::vector<std::string> toks;
  for (int b = 0; b < 256; ++b) toks.emplace_back(1, static_cast<char>(b));
  EXPECT_NE(error_of([&] { Tokenizer(toks, {{"<|x|>", kMaxSpecialId + 1}}, kGpt2Pattern); }).find("above the limit"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------- prepare

namespace {

// The token stream prepare dealt into train and val: block i of `block` tokens went to val when
// i % k == k - 1.
std::vector<uint32_t> interleave(const PrepareSummary& r, size_t block, size_t k) {
  std::vector<uint32_t> train, val;
  for (const auto& p : r.train) {
    Shard s(p);
    for (size_t i = 0; i < s.size(); ++i) train.push_back(s[i]);
  }
  for (const auto& p : r.val) {
    Shard s(p);
    for (size_t i = 0; i < s.size(); ++i) val.push_back(s[i]);
  }
  std::vector<uint32_t> out;
  size_t t = 0, v = 0;
  for (size_t b = 0; t < train.size() || v < val.size(); ++b) {
    const bool to_val = b % k == k - 1;
    auto& s = to_val ? val : train;
    size_t& i = to_val ? v : t;
    for (size_t j = 0; j < block && i < s.size(); ++j) out.push_back(s[i++]);
  }
  return out;
}

PrepareOptions options(std::vector<std::string> inputs, const fs::path& prefix, const Tokenizer* tk) {
  PrepareOptions o;
  o.inputs = std::move(inputs);
  o.out_prefix = prefix;
  o.tokenizer = tk;
  return o;
}

}  // namespace

// The streamed shards hold the ids the in-memory encoder gives each document, for text files
// read in any block size and JSONL documents encoded on any thread count.
TEST(Prepare, ShardsHoldEachDocumentAfterEndOfText) {
  TempDir d;
  std::mt19937 rng(5);
  const std::string a = corpus().substr(100'000, 250'000) + random_bytes(rng, 5000);
  const std::string b = random_bytes(rng, 3000) + corpus().substr(2'000'000, 150'000);
  write_file(d / "a.txt", a);
  write_file(d / "b.txt", b);
  write_file(d / "ab.jsonl", nlohmann::json{{"text", a}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  const Tokenizer small = small_trained(kGpt4Pattern);
  for (const Tokenizer* tk : {&gpt2(), &small}) {
    std::vector<uint32_t> want{tk->eot_id()};
    for (const std::string* doc : {&a, &b}) {
      const auto ids = tk->encode(*doc);
      want.insert(want.end(), ids.begin(), ids.end());
      if (doc == &a) want.push_back(tk->eot_id());
    }
    for (size_t read : {size_t{4096}, size_t{100'000}, size_t{8 << 20}}) {
      auto o = options({(d / "a.txt").string(), (d / "b.txt").string()}, d / "out", tk);
      o.val_frac = 0.1;
      o.block_tokens = 512;
      o.threads = 2;
      o.batch_bytes = read;
      o.shard_tokens = 40'000;
      const auto r = prepare_corpus(o);
      EXPECT_EQ(r.vocab_size, tk->vocab_size());
      EXPECT_EQ(Shard(r.train[0]).version(), kShardVersionU16);
      EXPECT_EQ(r.train_tokens + r.val_tokens, want.size());
      EXPECT_EQ(interleave(r, 512, 10), want) << "reads of " << read << " bytes";
    }
  }
  // JSONL lines (many short documents) on 1 and 3 threads.
  std::string jsonl;
  std::vector<uint32_t> want;
  for (size_t off = 0; off < 400'000; off += 1000 + off % 777) {
    const std::string doc = corpus().substr(off, 500 + off % 1500);
    jsonl += nlohmann::json{{"text", doc}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::ignore) + "\n";
    const std::string back = nlohmann::json::parse(jsonl.substr(jsonl.rfind('\n', jsonl.size() - 2) + 1))["text"];
    want.push_back(small.eot_id());
    const auto ids = small.encode(back);
    want.insert(want.end(), ids.begin(), ids.end());
  }
  write_file(d / "docs.jsonl", jsonl);
  for (int threads : {1, 3}) {
    auto o = options({(d / "docs.jsonl").string()}, d / "j", &small);
    o.threads = threads;
    o.batch_bytes = 50'000;
    o.block_tokens = 256;
    const auto r = prepare_corpus(o);
    EXPECT_EQ(interleave(r, 256, 20), want) << threads << " threads";
  }
}

TEST(Prepare, LargeVocabulariesWriteUint32Shards) {
  TempDir d;
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
  const Tokenizer tk(bytes, {{kEndOfText, 70000}}, kGpt2Pattern);
  write_file(d / "a.txt", "hello world\n");
  auto o = options({(d / "a.txt").string()}, d / "out", &tk);
  o.val_frac = 0.5;
  o.block_tokens = 4;
  const auto r = prepare_corpus(o);
  EXPECT_EQ(Shard(r.train[0]).version(), kShardVersionU32);
  EXPECT_EQ(Shard(r.train[0])[0], 70000u);
  EXPECT_NE(error_of([&] { prepare_corpus(options({(d / "missing.txt").string()}, d / "o", &tk)); }).find("missing.txt"),
            std::string::npos);
  write_file(d / "empty.txt", "");
  EXPECT_NE(error_of([&] { prepare_corpus(options({(d / "empty.txt").string()}, d / "o", &tk)); }).find("is empty"),
            std::string::npos);
}

// Issue 23, "Done when": a ~200 MB JSONL corpus prepared by the CLI (BPE, 2 threads, rolling
// shards) within the documented memory bound: prepare's peak RSS (VmHWM, read from /proc by the
// process itself and written to the manifest) at most kPrepareMemoryBoundMb above what the binary
// holds before it reads anything. Its text is the fixture corpus cut into documents, so the
// shards' token count is checked against the in-memory encoder on a sample.
namespace {
std::string run(const std::string& cmd, int* rc);  // below, with the CLI tests
}  // namespace

TEST(PrepareLarge, TwoHundredMegabytesInBoundedMemory) {
  constexpr double kPrepareMemoryBoundMb = 256;  // docs: README "Preparing data"
  TempDir d;
  const Tokenizer small = small_trained(kGpt2Pattern, 1024);
  small.save(d / "tok.tiktoken");
  {
    std::ofstream f(d / "big.jsonl", std::ios::binary);
    const std::string& c = corpus();
    std::mt19937 rng(9);
    size_t written = 0;
    while (written < 200'000'000) {
      const size_t off = rng() % (c.size() - 20'000), len = 200 + rng() % 8000;
      const std::string line =
          nlohmann::json{{"id", written}, {"text", c.substr(off, len)}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
      f << line;
      written += line.size();
    }
  }
  int rc = -1;
  const std::string out = run(std::string(OURO_BIN) + " prepare -q --threads 2 --shard-tokens 10000000 -t " +
                                  (d / "tok.tiktoken").string() + " " + (d / "big.jsonl").string() + " -o " +
                                  (d / "big").string() + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << out;
  const auto m = nlohmann::json::parse(read_file(d / "big.manifest.json"));
  const double peak = m["peak_rss_mb"].get<double>(), start = m["start_rss_mb"].get<double>();
  EXPECT_LE(peak - start, kPrepareMemoryBoundMb) << "peak " << peak << " MB, at start " << start << " MB";
  EXPECT_TRUE(m["complete"].get<bool>());
  EXPECT_GE(m["train"].size(), 4u);  // rolled over
  uint64_t toks = 0;
  for (const auto& sh : m["train"]) {
    EXPECT_LE(sh["tokens"].get<uint64_t>(), 10'000'000u);
    EXPECT_EQ(Shard(d / sh["file"].get<std::string>()).size(), sh["tokens"].get<uint64_t>());
    toks += sh["tokens"].get<uint64_t>();
  }
  EXPECT_EQ(m["totals"]["train_tokens"].get<uint64_t>(), toks);
  EXPECT_GT(m["totals"]["input_bytes"].get<uint64_t>(), 199'000'000u);
  std::fprintf(stderr, "200 MB prepare: peak %.0f MB, %.0f MB at start\n", peak, start);
}

// ---------------------------------------------------------------------------------- CLI

namespace {

std::string run(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (rc) *rc = WEXITSTATUS(status);
  return out;
}

}  // namespace

TEST(Cli, TrainTokenizeDecode) {
  TempDir d;
  write_file(d / "text.txt", corpus().substr(0, 200'000));
  int rc = -1;
  run(std::string(OURO_BIN) + " tokenizer train --input " + (d / "text.txt").string() +
          " --vocab 600 --pattern gpt4 --special '<|pad|>' --out " + (d / "t.tiktoken").string() + " 2>&1",
      &rc);
  ASSERT_EQ(rc, 0);
  const Tokenizer tk = Tokenizer::load(d / "t.tiktoken");
  EXPECT_EQ(tk.vocab_size(), 600u);
  EXPECT_EQ(tk.special_id("<|pad|>"), 599u);
  const std::string sample = "Größe 東京 it's  \n\t42 \xff<|endoftext|>";
  write_file(d / "in.txt", sample);
  const std::string ids = run(std::string(OURO_BIN) + " tokenize --tokenizer " + (d / "t.tiktoken").string() +
                                  " < " + (d / "in.txt").string(), &rc);
  ASSERT_EQ(rc, 0);
  const auto j = nlohmann::json::parse(ids);
  EXPECT_EQ(j.get<std::vector<uint32_t>>(), tk.encode(sample));
  write_file(d / "ids.json", ids);
  EXPECT_EQ(run(std::string(OURO_BIN) + " tokenize --decode -t " + (d / "t.tiktoken").string() + " < " +
                    (d / "ids.json").string(), &rc), sample);
  EXPECT_EQ(rc, 0);
  const std::string sp = run(std::string(OURO_BIN) + " tokenize --allow-special -t " + (d / "t.tiktoken").string() +
                             " < " + (d / "in.txt").string(), &rc);
  EXPECT_EQ(nlohmann::json::parse(sp).back().get<uint32_t>(), 598u);
  write_file(d / "bad.json", "[1, -2]");
  const std::string err = run(std::string(OURO_BIN) + " tokenize --decode -t " + (d / "t.tiktoken").string() +
                              " < " + (d / "bad.json").string() + " 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("element 1"), std::string::npos) << err;
  run(std::string(OURO_BIN) + " tokenizer train --input " + (d / "text.txt").string() +
          " --vocab 200 --out " + (d / "x.tiktoken").string() + " 2>&1", &rc);
  EXPECT_NE(rc, 0);
}

TEST(Cli, PrepareTrainAndSampleWithATokenizer) {
  // The whole text path: train a tokenizer, prepare shards with it, train a small model whose
  // periodic samples decode with it, then `ouro sample` finds the run's copy of it.
  TempDir d;
  write_file(d / "text.txt", corpus().substr(0, 400'000));
  const std::string bin = OURO_BIN;
  int rc = -1;
  std::string out = run(bin + " tokenizer train -i " + (d / "text.txt").string() + " --vocab 320 -o " +
                            (d / "tok.tiktoken").string() + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << out;
  out = run(bin + " prepare -i " + (d / "text.txt").string() + " -o " + (d / "data").string() + " -t " +
                (d / "tok.tiktoken").string() + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("100%"), std::string::npos) << out;  // the progress bar's last line
  write_file(d / "cfg.toml", "[model]\nn_layer = 1\nn_head = 2\nn_embd = 32\nseq_len = 32\nvocab_size = 320\n"
                             "[train]\nsteps = 4\nbatch_size = 2\neval_every = 0\n[data]\ntrain = \"" +
                                 (d / "data_train_000000.bin").string() + "\"\ntokenizer = \"" +
                                 (d / "tok.tiktoken").string() + "\"\n[run]\nthreads = 2\nout_dir = \"" +
                                 (d / "run").string() + "\"\n[sample]\nevery = 2\nmax_tokens = 8\nprompt = \"And God\"\n");
  out = run(bin + " train --config " + (d / "cfg.toml").string() + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("sample at step 2: And God"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(d / "run/tokenizer.tiktoken"));
  EXPECT_TRUE(fs::exists(d / "run/tokenizer.tiktoken.json"));
  out = run(bin + " sample --init " + (d / "run/checkpoints/step_000004").string() +
                " --prompt 'In the beginning' -n 12 --seed 3 2>/dev/null", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out.rfind("In the beginning", 0), 0u) << out;
  // A tokenizer larger than the model's vocabulary is refused before training starts.
  out = run(bin + " train --config " + (d / "cfg.toml").string() + " --set model.vocab_size=300 --set run.out_dir=" +
                (d / "run2").string() + " 2>&1", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("has 320 ids but the model's vocabulary is 300"), std::string::npos) << out;
}
