// Shards, data paths, the loader and byte-level preparation.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "ouro/data.h"
#include "ouro/error.h"

namespace fs = std::filesystem;
using namespace ouro;

namespace {

// A fresh directory under the system temp dir, removed with everything in it afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() / ("ouro_test_data_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
};

std::vector<uint32_t> random_tokens(size_t n, uint32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint32_t> t(n);
  for (auto& x : t) x = rng() % vocab;
  return t;
}

void write_bytes(const fs::path& p, const std::vector<char>& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<char> read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Runs fn and returns the ouro::Error message it throws (failing the test if it does not).
template <typename F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ouro::Error";
  return {};
}

std::vector<uint32_t> read_shard(const fs::path& p) {
  Shard s(p);
  std::vector<uint32_t> out(s.size());
  for (size_t i = 0; i < s.size(); ++i) out[i] = s[i];
  return out;
}

// Shards whose token at global offset g is g (vocabulary large enough, so uint32), so every
// window names itself by its first token.
struct CodedShards {
  TempDir dir;
  std::vector<size_t> sizes;
  std::vector<uint32_t> base;  // global offset of each shard's first token
  std::string spec;
  explicit CodedShards(std::vector<size_t> shard_sizes) : sizes(std::move(shard_sizes)) {
    uint32_t g = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      std::vector<uint32_t> t(sizes[i]);
      base.push_back(g);
      for (auto& x : t) x = g++;
      write_shard(dir / fmt::format("shard_{:03d}.bin", i), t, 1 << 20);
    }
    spec = (dir / "shard_*.bin").string();
  }
  // All windows as their first tokens, in file order.
  std::vector<int> windows(int T) const {
    std::vector<int> w;
    for (size_t i = 0; i < sizes.size(); ++i)
      for (size_t s = 0; sizes[i] > 0 && s + T + 1 <= sizes[i]; s += T)
        w.push_back(static_cast<int>(base[i] + s));
    return w;
  }
};

struct Batch {
  std::vector<int> in, tg;
  bool operator==(const Batch&) const = default;
};

Batch next(DataLoader& dl, int B, int T) {
  Batch b{std::vector<int>(B * T), std::vector<int>(B * T)};
  dl.next_batch(b.in.data(), b.tg.data());
  return b;
}

}  // namespace

// ---------------------------------------------------------------- shards

TEST(Shard, RoundTripU16) {
  TempDir d;
  auto t = random_tokens(10007, 50257, 1);
  t[0] = 50256;
  write_shard(d / "a.bin", t, 50257);
  Shard s(d / "a.bin");
  EXPECT_EQ(s.version(), kShardVersionU16);
  EXPECT_EQ(s.path(), d / "a.bin");
  EXPECT_EQ(fs::file_size(d / "a.bin"), 1024 + 2 * t.size());
  EXPECT_EQ(read_shard(d / "a.bin"), t);
}

TEST(Shard, U16HoldsAFullSixteenBitVocabulary) {
  TempDir d;
  std::vector<uint32_t> t{0, 65535, 1, 65534};
  write_shard(d / "a.bin", t, 65536);
  EXPECT_EQ(Shard(d / "a.bin").version(), kShardVersionU16);
  EXPECT_EQ(read_shard(d / "a.bin"), t);
}

TEST(Shard, RoundTripU32) {
  TempDir d;
  auto t = random_tokens(5003, 200000, 2);
  t[7] = 199999;
  write_shard(d / "b.bin", t, 200000);
  Shard s(d / "b.bin");
  EXPECT_EQ(s.version(), kShardVersionU32);
  EXPECT_EQ(fs::file_size(d / "b.bin"), 1024 + 4 * t.size());
  EXPECT_EQ(read_shard(d / "b.bin"), t);
}

TEST(Shard, WriteOverwritesAndLeavesNoTempFiles) {
  TempDir d;
  write_shard(d / "sub" / "a.bin", random_tokens(100, 300, 3), 300);
  auto t = random_tokens(50, 300, 4);
  write_shard(d / "sub" / "a.bin", t, 300);
  EXPECT_EQ(read_shard(d / "sub" / "a.bin"), t);
  size_t entries = std::distance(fs::directory_iterator(d / "sub"), fs::directory_iterator());
  EXPECT_EQ(entries, 1u);
}

TEST(Shard, WriteRejectsTokenOutsideVocabulary) {
  TempDir d;
  std::vector<uint32_t> t{1, 2, 257, 3};
  auto msg = error_of([&] { write_shard(d / "a.bin", t, 257); });
  EXPECT_NE(msg.find("index 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find((d / "a.bin").string()), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(d / "a.bin"));
}

TEST(Shard, EmptyShardOpens) {
  TempDir d;
  write_shard(d / "e.bin", {}, 257);
  Shard s(d / "e.bin");
  EXPECT_EQ(s.size(), 0u);
}

TEST(Shard, MissingFileNamesPath) {
  TempDir d;
  auto msg = error_of([&] { Shard s(d / "nope.bin"); });
  EXPECT_NE(msg.find((d / "nope.bin").string()), std::string::npos) << msg;
}

// Each corruption of a valid shard must be caught with a message naming the file.
class ShardCorruption : public ::testing::Test {
 protected:
  TempDir d;
  fs::path p = d / "c.bin";
  std::vector<char> good;
  void SetUp() override {
    write_shard(p, random_tokens(100, 1000, 5), 1000);
    good = read_bytes(p);
  }
  std::string open_error(const std::vector<char>& bytes) {
    write_bytes(p, bytes);
    auto msg = error_of([&] { Shard s(p); });
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
    return msg;
  }
  void set_int(std::vector<char>& b, size_t index, int32_t v) {
    std::memcpy(b.data() + 4 * index, &v, 4);
  }
};

TEST_F(ShardCorruption, TruncatedHeader) {
  auto msg = open_error(std::vector<char>(good.begin(), good.begin() + 1000));
  EXPECT_NE(msg.find("header"), std::string::npos) << msg;
  open_error({});
}

TEST_F(ShardCorruption, BadMagic) {
  auto b = good;
  set_int(b, 0, 12345);
  auto msg = open_error(b);
  EXPECT_NE(msg.find("12345"), std::string::npos) << msg;
}

TEST_F(ShardCorruption, BadVersion) {
  auto b = good;
  set_int(b, 1, 7);
  auto msg = open_error(b);
  EXPECT_NE(msg.find("version 7"), std::string::npos) << msg;
}

TEST_F(ShardCorruption, FileShorterThanHeaderCount) {
  auto msg = open_error(std::vector<char>(good.begin(), good.end() - 2));
  EXPECT_NE(msg.find("1224 bytes expected"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1222 bytes"), std::string::npos) << msg;
}

TEST_F(ShardCorruption, FileLongerThanHeaderCount) {
  auto b = good;
  b.insert(b.end(), {0, 0});
  auto msg = open_error(b);
  EXPECT_NE(msg.find("1226 bytes"), std::string::npos) << msg;
}

TEST_F(ShardCorruption, NegativeCount) {
  auto b = good;
  set_int(b, 2, -1);
  open_error(b);
}

// ---------------------------------------------------------------- data paths

TEST(DataPaths, FileDirectoryAndGlob) {
  TempDir d;
  for (auto n : {"b_002.bin", "a_001.bin", "a_010.bin", "a_002.txt", ".hidden.bin"})
    write_bytes(d / n, {'x'});
  fs::create_directories(d / "sub1");
  fs::create_directories(d / "sub2");
  write_bytes(d / "sub1" / "t.bin", {'x'});
  write_bytes(d / "sub2" / "t.bin", {'x'});

  EXPECT_EQ(expand_data_paths((d / "a_001.bin").string()),
            std::vector<fs::path>{d / "a_001.bin"});
  EXPECT_EQ(expand_data_paths(d.path.string()),
            (std::vector<fs::path>{d / "a_001.bin", d / "a_010.bin", d / "b_002.bin"}));
  EXPECT_EQ(expand_data_paths((d / "a_*").string()),
            (std::vector<fs::path>{d / "a_001.bin", d / "a_002.txt", d / "a_010.bin"}));
  EXPECT_EQ(expand_data_paths((d / "?_00?.bin").string()),
            (std::vector<fs::path>{d / "a_001.bin", d / "b_002.bin"}));
  EXPECT_EQ(expand_data_paths((d / "sub*" / "t.bin").string()),
            (std::vector<fs::path>{d / "sub1" / "t.bin", d / "sub2" / "t.bin"}));
}

TEST(DataPaths, NoMatchNamesSpec) {
  TempDir d;
  fs::create_directories(d / "empty");
  for (auto spec : {(d / "z*.bin").string(), (d / "missing.bin").string(),
                    (d / "empty").string()}) {
    auto msg = error_of([&] { expand_data_paths(spec); });
    EXPECT_NE(msg.find(spec), std::string::npos) << msg;
  }
}

// ---------------------------------------------------------------- loader

TEST(Loader, EveryWindowOnceAndTargetsShifted) {
  const int T = 8, B = 3;
  CodedShards data({100, 9, 8, 0, 57, 33});  // ragged, with shards too small for a window
  const auto all = data.windows(T);
  for (bool shuffle : {false, true}) {
    DataLoader dl(data.spec, B, T, 0, 1, 42, shuffle);
    ASSERT_EQ(dl.num_windows(), all.size());
    ASSERT_EQ(dl.batches_per_epoch(), all.size() / B);
    std::vector<int> seen;
    for (size_t i = 0; i < dl.batches_per_epoch(); ++i) {
      Batch b = next(dl, B, T);
      for (int r = 0; r < B; ++r) {
        seen.push_back(b.in[r * T]);
        for (int t = 0; t < T; ++t) {
          EXPECT_EQ(b.in[r * T + t], b.in[r * T] + t);  // contiguous within one shard
          EXPECT_EQ(b.tg[r * T + t], b.in[r * T + t] + 1);
        }
      }
    }
    EXPECT_EQ(dl.position().epoch, 0u);
    std::vector<int> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "repeat";
    for (int w : seen) EXPECT_TRUE(std::binary_search(all.begin(), all.end(), w)) << w;
    const std::vector<int> file_order(all.begin(), all.begin() + seen.size());
    if (shuffle) {
      EXPECT_NE(seen, file_order);
    } else {
      EXPECT_EQ(seen, file_order);
    }
    next(dl, B, T);
    EXPECT_EQ(dl.position().epoch, 1u);
    EXPECT_EQ(dl.position().cursor, static_cast<uint64_t>(B));
  }
}

TEST(Loader, FullEpochCoversAllWindowsWhenBatchDivides) {
  const int T = 4;
  CodedShards data({41, 13, 22});  // 10 + 3 + 5 = 18 windows
  const auto all = data.windows(T);
  ASSERT_EQ(all.size(), 18u);
  DataLoader dl(data.spec, 6, T, 0, 1, 9, true);
  std::multiset<int> seen;
  for (int i = 0; i < 3; ++i) {
    Batch b = next(dl, 6, T);
    for (int r = 0; r < 6; ++r) seen.insert(b.in[r * T]);
  }
  EXPECT_EQ(seen, std::multiset<int>(all.begin(), all.end()));
}

TEST(Loader, RandomTokensTargetsAreInputsShifted) {
  TempDir d;
  const int T = 16, B = 4;
  auto toks = random_tokens(2000, 50257, 11);
  write_shard(d / "r.bin", toks, 50257);
  DataLoader dl((d / "r.bin").string(), B, T, 0, 1, 3, true);
  for (int i = 0; i < 10; ++i) {
    Batch b = next(dl, B, T);
    for (int r = 0; r < B; ++r) {
      // Find the window in the shard by its content: it must start at a multiple of T.
      bool found = false;
      for (size_t s = 0; s + T + 1 <= toks.size() && !found; s += T) {
        bool eq = true;
        for (int t = 0; t < T && eq; ++t)
          eq = b.in[r * T + t] == static_cast<int>(toks[s + t]) &&
               b.tg[r * T + t] == static_cast<int>(toks[s + t + 1]);
        found = eq;
      }
      EXPECT_TRUE(found);
    }
  }
  EXPECT_EQ(dl.max_token(), static_cast<int>(*std::max_element(toks.begin(), toks.end())));
}

TEST(Loader, SeedDeterminesOrderAndEpochsDiffer) {
  const int T = 5, B = 2;
  CodedShards data({200, 77});
  auto epoch_order = [&](uint64_t seed, int epochs) {
    DataLoader dl(data.spec, B, T, 0, 1, seed, true);
    std::vector<std::vector<int>> out(epochs);
    for (int e = 0; e < epochs; ++e)
      for (size_t i = 0; i < dl.batches_per_epoch(); ++i) {
        Batch b = next(dl, B, T);
        for (int r = 0; r < B; ++r) out[e].push_back(b.in[r * T]);
      }
    return out;
  };
  auto a = epoch_order(1, 2), a2 = epoch_order(1, 2), c = epoch_order(2, 2);
  EXPECT_EQ(a, a2);
  EXPECT_NE(a[0], c[0]);
  EXPECT_NE(a[0], a[1]);
}

TEST(Loader, TwoRanksReadWhatOneRankWithDoubleBatchReads) {
  const int T = 6, B = 3;
  CodedShards data({150, 31, 64, 7});
  for (bool shuffle : {false, true}) {
    DataLoader one(data.spec, 2 * B, T, 0, 1, 5, shuffle);
    DataLoader r0(data.spec, B, T, 0, 2, 5, shuffle);
    DataLoader r1(data.spec, B, T, 1, 2, 5, shuffle);
    EXPECT_EQ(one.batches_per_epoch(), r0.batches_per_epoch());
    for (size_t i = 0; i < 3 * one.batches_per_epoch() + 1; ++i) {  // across epochs
      Batch big = next(one, 2 * B, T), a = next(r0, B, T), b = next(r1, B, T);
      a.in.insert(a.in.end(), b.in.begin(), b.in.end());
      a.tg.insert(a.tg.end(), b.tg.begin(), b.tg.end());
      ASSERT_EQ(a, big) << "batch " << i << " shuffle " << shuffle;
      ASSERT_EQ(r0.position().epoch, one.position().epoch);
      ASSERT_EQ(r0.position().cursor, one.position().cursor);
    }
  }
}

TEST(Loader, PositionResumesExactly) {
  const int T = 7, B = 4;
  CodedShards data({300, 45});
  for (bool shuffle : {false, true}) {
    DataLoader a(data.spec, B, T, 0, 1, 77, shuffle);
    const size_t per_epoch = a.batches_per_epoch();
    for (size_t i = 0; i < per_epoch + 2; ++i) next(a, B, T);
    // Through json, as a checkpoint would carry it.
    nlohmann::json j = a.position();
    auto saved = nlohmann::json::parse(j.dump()).get<LoaderPosition>();
    EXPECT_EQ(saved.epoch, 1u);
    DataLoader b(data.spec, B, T, 0, 1, 77, shuffle);
    b.set_position(saved);
    for (size_t i = 0; i < per_epoch + 3; ++i) ASSERT_EQ(next(a, B, T), next(b, B, T)) << i;
  }
}

TEST(Loader, PositionJsonErrors) {
  auto msg = error_of([] { nlohmann::json{{"epoch", 1}}.get<LoaderPosition>(); });
  EXPECT_NE(msg.find("cursor"), std::string::npos) << msg;
  msg = error_of([] { nlohmann::json{{"epoch", -1}, {"cursor", 0}}.get<LoaderPosition>(); });
  EXPECT_NE(msg.find("epoch"), std::string::npos) << msg;
  auto p = nlohmann::json{{"epoch", 3}, {"cursor", 8}}.get<LoaderPosition>();
  EXPECT_EQ(p.epoch, 3u);
  EXPECT_EQ(p.cursor, 8u);
}

TEST(Loader, SetPositionRejectsCursorPastEpoch) {
  CodedShards data({50});
  DataLoader dl(data.spec, 1, 4, 0, 1, 0, false);
  auto msg = error_of([&] { dl.set_position({0, 1000}); });
  EXPECT_NE(msg.find("1000"), std::string::npos) << msg;
}

TEST(Loader, ArgumentErrors) {
  CodedShards data({50, 20});  // 12 + 4 = 16 windows at T = 4
  EXPECT_THROW(DataLoader(data.spec, 0, 4, 0, 1, 0, false), Error);
  EXPECT_THROW(DataLoader(data.spec, 1, 0, 0, 1, 0, false), Error);
  EXPECT_THROW(DataLoader(data.spec, 1, 4, 2, 2, 0, false), Error);
  EXPECT_THROW(DataLoader(data.spec, 1, 4, -1, 2, 0, false), Error);
  EXPECT_NO_THROW(DataLoader(data.spec, 8, 4, 1, 2, 0, false));
  auto msg = error_of([&] { DataLoader(data.spec, 9, 4, 0, 2, 0, false); });
  EXPECT_NE(msg.find(data.spec), std::string::npos) << msg;
  EXPECT_NE(msg.find("70 tokens"), std::string::npos) << msg;
  EXPECT_NE(msg.find("16 window"), std::string::npos) << msg;
  EXPECT_NE(msg.find("needs 18"), std::string::npos) << msg;
}

TEST(Loader, OnlyEmptyOrShortShardsIsAnError) {
  CodedShards data({0, 3, 0});
  auto msg = error_of([&] { DataLoader(data.spec, 1, 4, 0, 1, 0, false); });
  EXPECT_NE(msg.find(data.spec), std::string::npos) << msg;
}

TEST(Loader, MaxToken) {
  CodedShards data({30, 12});
  DataLoader dl(data.spec, 1, 4, 0, 1, 0, false);
  EXPECT_EQ(dl.max_token(), 41);
  EXPECT_EQ(dl.max_token(), 41);
}

// ---------------------------------------------------------------- prepare

namespace {

std::vector<uint32_t> read_all(const std::vector<fs::path>& shards) {
  std::vector<uint32_t> out;
  for (const auto& p : shards) {
    const auto t = read_shard(p);
    out.insert(out.end(), t.begin(), t.end());
  }
  return out;
}

// Deals the blocks back in order (block b came from val when b % k == k - 1).
std::vector<uint32_t> undeal(const std::vector<uint32_t>& train, const std::vector<uint32_t>& val, size_t block,
                             size_t k) {
  std::vector<uint32_t> out;
  size_t ti = 0, vi = 0;
  for (size_t b = 0; ti < train.size() || vi < val.size(); ++b) {
    const auto& src = b % k == k - 1 ? val : train;
    size_t& i = b % k == k - 1 ? vi : ti;
    const size_t n = std::min(block, src.size() - i);
    out.insert(out.end(), src.begin() + static_cast<long>(i), src.begin() + static_cast<long>(i + n));
    i += n;
    if (n == 0 && (b % k == k - 1 ? ti == train.size() : vi == val.size())) break;
  }
  return out;
}

std::string text_of(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

std::string shell(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  *rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return out;
}

PrepareOptions bytes_options(std::vector<std::string> inputs, const fs::path& prefix) {
  PrepareOptions o;
  o.inputs = std::move(inputs);
  o.out_prefix = prefix;
  return o;
}

}  // namespace

TEST(Prepare, SplitSizesAndContent) {
  TempDir d;
  std::mt19937 rng(7);
  std::vector<uint32_t> stream;  // what the concatenated blocks must reproduce
  std::vector<std::string> inputs;
  for (int i = 0; i < 5; ++i) {
    std::vector<char> bytes(1 + rng() % 3000);
    for (auto& c : bytes) c = static_cast<char>(rng() % 256);
    inputs.push_back((d / fmt::format("doc{}.txt", i)).string());
    write_bytes(inputs.back(), bytes);
    stream.push_back(kByteEot);
    for (char c : bytes) stream.push_back(static_cast<uint8_t>(c));
  }
  const size_t block = 100;
  for (size_t batch : {size_t{7}, size_t{1000}, size_t{1} << 20}) {
    PrepareOptions o = bytes_options(inputs, d / "out" / "corpus");
    o.val_frac = 0.25;  // k = 4
    o.block_tokens = block;
    o.batch_bytes = batch;
    const auto r = prepare_corpus(o);
    ASSERT_EQ(r.train, std::vector<fs::path>{d / "out" / "corpus_train_000000.bin"});
    ASSERT_EQ(r.val, std::vector<fs::path>{d / "out" / "corpus_val_000000.bin"});
    EXPECT_EQ(r.train_tokens + r.val_tokens, stream.size());
    EXPECT_EQ(r.documents, 5u);
    const auto train = read_all(r.train), val = read_all(r.val);
    EXPECT_EQ(Shard(r.train[0]).version(), kShardVersionU16);
    EXPECT_EQ(undeal(train, val, block, 4), stream) << "batch " << batch;
    size_t expect_val = 0;
    for (size_t b = 3; b * block < stream.size(); b += 4) expect_val += std::min(block, stream.size() - b * block);
    EXPECT_EQ(val.size(), expect_val);
  }
}

// Issue 23: shards roll over every shard_tokens; the manifest lists each with its tokens and
// documents; a rerun on a smaller corpus removes the earlier run's extra shards.
TEST(Prepare, ShardsRollOverAndTheManifestListsThem) {
  TempDir d;
  std::string jsonl;
  std::vector<uint32_t> stream;
  std::mt19937 rng(3);
  for (int i = 0; i < 300; ++i) {
    std::string t(1 + rng() % 400, 'a');
    for (auto& c : t) c = static_cast<char>('a' + rng() % 26);
    jsonl += nlohmann::json{{"id", i}, {"text", t}}.dump() + "\n";
    stream.push_back(kByteEot);
    stream.insert(stream.end(), t.begin(), t.end());
  }
  write_text(d / "c.jsonl", jsonl);
  PrepareOptions o = bytes_options({(d / "c.jsonl").string()}, d / "o" / "c");
  o.shard_tokens = 5000;
  o.block_tokens = 300;
  o.val_frac = 0.1;
  o.batch_bytes = 4096;
  o.threads = 2;
  o.command = "test";
  const auto r = prepare_corpus(o);
  EXPECT_EQ(r.documents, 300u);
  EXPECT_EQ(r.train.size(), (r.train_tokens + 4999) / 5000);
  EXPECT_GE(r.train.size(), 10u);
  for (size_t i = 0; i + 1 < r.train.size(); ++i) EXPECT_EQ(Shard(r.train[i]).size(), 5000u) << i;
  EXPECT_EQ(undeal(read_all(r.train), read_all(r.val), 300, 10), stream);
  const auto m = nlohmann::json::parse(text_of(d / "o" / "c.manifest.json"));
  EXPECT_TRUE(m["complete"].get<bool>());
  EXPECT_EQ(m["command"], "test");
  EXPECT_EQ(m["train"].size(), r.train.size());
  uint64_t docs = 0, toks = 0;
  for (const auto& part : {m["train"], m["val"]})
    for (const auto& sh : part) {
      docs += sh["documents"].get<uint64_t>();
      toks += sh["tokens"].get<uint64_t>();
      EXPECT_EQ(Shard(d / "o" / sh["file"].get<std::string>()).size(), sh["tokens"].get<uint64_t>());
    }
  EXPECT_EQ(docs, 300u);
  EXPECT_EQ(toks, stream.size());
  EXPECT_EQ(m["totals"]["tokens"], stream.size());
  EXPECT_EQ(m["totals"]["documents"], 300);
  EXPECT_GT(m["peak_rss_mb"].get<double>(), 0.0);
  // Every thread count and batch size writes the same bytes.
  o.threads = 1;
  o.batch_bytes = 1 << 20;
  o.out_prefix = d / "o1" / "c";
  const auto r1 = prepare_corpus(o);
  ASSERT_EQ(r1.train.size(), r.train.size());
  for (size_t i = 0; i < r.train.size(); ++i) EXPECT_EQ(text_of(r.train[i]), text_of(r1.train[i])) << i;
  // A rerun on a smaller corpus leaves no shard of the first run behind.
  write_text(d / "c.jsonl", jsonl.substr(0, jsonl.find('\n', jsonl.size() / 3) + 1));
  o.out_prefix = d / "o" / "c";
  const auto r2 = prepare_corpus(o);
  EXPECT_LT(r2.train.size(), r.train.size());
  EXPECT_EQ(expand_data_paths((d / "o" / "c_train_*.bin").string()), r2.train);
}

// Issue 23: JSONL from a file, gzip, zstd and standard input make the same shards; malformed
// lines are errors naming file and line, or skipped and counted.
TEST(Prepare, JsonlInputsAndBadLines) {
  TempDir d;
  std::string jsonl;
  for (int i = 0; i < 200; ++i) jsonl += nlohmann::json{{"text", fmt::format("document {} says {}", i, i * i)}}.dump() + "\n";
  write_text(d / "c.jsonl", jsonl);
  int rc = 0;
  std::string out = shell("gzip -k -c " + (d / "c.jsonl").string() + " > " + (d / "c.jsonl.gz").string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  const bool have_zstd = shell("zstd -q -c " + (d / "c.jsonl").string() + " > " + (d / "c.jsonl.zst").string(), &rc).empty() && rc == 0;
  const std::string bin = OURO_BIN;
  out = shell(bin + " prepare -q --block 64 -i " + (d / "c.jsonl").string() + " -o " + (d / "f").string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  const std::string want = text_of(d / "f_train_000000.bin");
  EXPECT_GT(want.size(), 1024u);
  out = shell(bin + " prepare -q --block 64 " + (d / "c.jsonl.gz").string() + " -o " + (d / "g").string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(text_of(d / "g_train_000000.bin"), want);
  if (have_zstd) {
    out = shell(bin + " prepare -q --block 64 " + (d / "c.jsonl.zst").string() + " -o " + (d / "z").string(), &rc);
    ASSERT_EQ(rc, 0) << out;
    EXPECT_EQ(text_of(d / "z_train_000000.bin"), want);
  }
  out = shell("cat " + (d / "c.jsonl").string() + " | " + bin + " prepare -q --jsonl --block 64 - -o " + (d / "s").string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(text_of(d / "s_train_000000.bin"), want);
  // Bad lines: named by file and line; --skip-bad counts them.
  write_text(d / "bad.jsonl", jsonl.substr(0, 40) + "\n{\"text\": 5}\n{\"body\": \"x\"}\n[1]\n{nope\n" + jsonl);
  const std::string bad = (d / "bad.jsonl").string();
  auto msg = error_of([&] { prepare_corpus(bytes_options({bad}, d / "b")); });
  EXPECT_NE(msg.find(bad + ":2: invalid JSON"), std::string::npos) << msg;  // line 1 is whole
  write_text(d / "bad.jsonl", "{\"text\": \"ok\"}\n\n{\"text\": 5}\n" + jsonl);
  msg = error_of([&] { prepare_corpus(bytes_options({bad}, d / "b")); });
  EXPECT_NE(msg.find(bad + ":3: key 'text' is number, not a string"), std::string::npos) << msg;
  PrepareOptions o = bytes_options({bad}, d / "b");
  o.text_key = "body";
  msg = error_of([&] { prepare_corpus(o); });
  EXPECT_NE(msg.find(bad + ":1: no key 'body'"), std::string::npos) << msg;
  o.text_key = "text";
  o.skip_bad = true;
  write_text(d / "bad.jsonl", "{\"text\": 5}\n[1]\n{nope\n" + jsonl + "{\"text\": \"tail\"");
  const auto r = prepare_corpus(o);
  EXPECT_EQ(r.bad_lines, 4u);
  EXPECT_EQ(r.documents, 200u);
  EXPECT_FALSE(fs::exists(d / "b_train_000000.bin.tmp"));
  // Corrupt compressed data names the file.
  write_text(d / "x.jsonl.gz", text_of(d / "c.jsonl.gz").substr(0, 100));
  msg = error_of([&] { prepare_corpus(bytes_options({(d / "x.jsonl.gz").string()}, d / "x")); });
  EXPECT_NE(msg.find("x.jsonl.gz"), std::string::npos) << msg;
}

// Issue 23: an interrupted prepare (kill -9 while a shard is open) leaves only complete shards
// (the open one is a hidden .tmp); rerunning the command writes what an uninterrupted run does
// and removes the debris.
TEST(Prepare, KilledRunLeavesNoPartialShardAndRerunMatches) {
  TempDir d;
  std::string text;
  std::mt19937 rng(11);
  while (text.size() < 300'000) text += static_cast<char>('a' + rng() % 26);
  write_text(d / "part.txt", text);
  const std::string bin = OURO_BIN;
  const std::string cmd = bin + " prepare -q --shard-tokens 100000 --block 1000 -o " + (d / "k").string() + " -";
  // Standard input gets the text, then stays open: prepare blocks with a shard open.
  int rc = 0;
  const std::string script =
      "(cat " + (d / "part.txt").string() + "; sleep 20) 2>/dev/null | " + cmd + " 2>/dev/null & "
      "for i in $(seq 1 200); do [ -e " + (d / "k_train_000001.bin").string() + " ] && break; sleep 0.05; done; "
      "sleep 0.3; kill -9 $!; sleep 0.2; ls -a " + d.path.string();
  const std::string listing = shell("bash -c '" + script + "'", &rc);
  EXPECT_NE(listing.find("k_train_000001.bin"), std::string::npos) << listing;
  EXPECT_NE(listing.find(".k_train_000002.bin.tmp"), std::string::npos) << listing;
  EXPECT_EQ(listing.find("k_train_000002.bin\n"), std::string::npos) << listing;
  for (const auto& p : expand_data_paths((d / "k_*.bin").string())) EXPECT_EQ(Shard(p).size(), 100000u) << p;
  const auto partial = nlohmann::json::parse(text_of(d / "k.manifest.json"));
  EXPECT_FALSE(partial["complete"].get<bool>());
  // The rerun.
  std::string out = shell(cmd + " < " + (d / "part.txt").string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  out = shell(bin + " prepare -q --shard-tokens 100000 --block 1000 -i " + (d / "part.txt").string() + " -o " +
                  (d / "ref").string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_FALSE(fs::exists(d / ".k_train_000002.bin.tmp"));
  const auto ref = expand_data_paths((d / "ref_train_*.bin").string());
  const auto got = expand_data_paths((d / "k_train_*.bin").string());
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_EQ(text_of(got[i]), text_of(ref[i])) << i;
  EXPECT_TRUE(nlohmann::json::parse(text_of(d / "k.manifest.json"))["complete"].get<bool>());
}

TEST(Prepare, Errors) {
  TempDir d;
  write_bytes(d / "ok.txt", {'h', 'i'});
  write_bytes(d / "empty.txt", {});
  auto msg = error_of([&] { prepare_corpus(bytes_options({(d / "ok.txt").string(), (d / "empty.txt").string()}, d / "o")); });
  EXPECT_NE(msg.find((d / "empty.txt").string()), std::string::npos) << msg;
  msg = error_of([&] { prepare_corpus(bytes_options({(d / "missing.txt").string()}, d / "o")); });
  EXPECT_NE(msg.find((d / "missing.txt").string()), std::string::npos) << msg;
  PrepareOptions o = bytes_options({(d / "ok.txt").string()}, d / "o");
  o.val_frac = 0.0;
  EXPECT_THROW(prepare_corpus(o), Error);
  o.val_frac = 0.6;
  EXPECT_THROW(prepare_corpus(o), Error);
  EXPECT_THROW(prepare_corpus(bytes_options({}, d / "o")), Error);
  EXPECT_THROW(prepare_corpus(bytes_options({"-", "-"}, d / "o")), Error);
  EXPECT_FALSE(fs::exists(d / "o_train_000000.bin"));
}

// Issue 23: Parquet corpora go through tools/parquet_to_jsonl.py into `ouro prepare -` and give
// the shards the same documents as JSONL make. Needs pyarrow in the tools venv (tools/setup.sh);
// OURO_TEST_PYTHON names another interpreter.
TEST(Prepare, ParquetThroughTheConverterMatchesJsonl) {
  const char* env = std::getenv("OURO_TEST_PYTHON");
  const std::string python = env ? env : std::string(OURO_SOURCE_DIR) + "/.venv/bin/python";
  int rc = 0;
  shell("'" + python + "' -c 'import pyarrow'", &rc);
  if (rc != 0) GTEST_SKIP() << "no pyarrow in " << python << " (tools/setup.sh installs it)";
  TempDir d;
  std::string jsonl;
  for (int i = 0; i < 500; ++i) jsonl += nlohmann::json{{"text", fmt::format("row {} of the table, é {}", i, i * 7)}}.dump() + "\n";
  write_text(d / "c.jsonl", jsonl);
  std::string out = shell("'" + python + "' -c \"import json, pyarrow as pa, pyarrow.parquet as pq; "
                          "rows = [json.loads(l)['text'] for l in open('" + (d / "c.jsonl").string() + "')]; "
                          "pq.write_table(pa.table({'id': list(range(len(rows))), 'text': rows}), '" +
                          (d / "c.parquet").string() + "', row_group_size=128)\"", &rc);
  ASSERT_EQ(rc, 0) << out;
  const std::string bin = OURO_BIN;
  out = shell("'" + python + "' " + OURO_SOURCE_DIR + "/tools/parquet_to_jsonl.py --batch-rows 50 " +
              (d / "c.parquet").string() + " | " + bin + " prepare -q --block 64 - --jsonl -o " + (d / "p").string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  out = shell(bin + " prepare -q --block 64 " + (d / "c.jsonl").string() + " -o " + (d / "j").string(), &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(text_of(d / "p_train_000000.bin"), text_of(d / "j_train_000000.bin"));
  EXPECT_EQ(text_of(d / "p_val_000000.bin"), text_of(d / "j_val_000000.bin"));
}
