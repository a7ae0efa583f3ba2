// src/common: the hashes (values are part of file formats and seeds: pinned to published test
// vectors and to the values the engine's first copies produced) and the JSONL rewrite.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/hash.h"
#include "ouro/choice.h"
#include "common/jsonl.h"

namespace fs = std::filesystem;
using namespace ouro;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(Hash, Fnv1aMatchesTheReferenceVectorsAndTheShortBasisItsFirstCopies) {
  // FNV-1a 64 reference vectors (Fowler, Noll, Vo).
  EXPECT_EQ(fnv1a("", 0, kFnv1aOffset), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a("a", 1, kFnv1aOffset), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a("foobar", 6, kFnv1aOffset), 0x85944171f73967e8ull);
  // The short basis (shard manifests, rank fingerprints, n-gram keys): value computed apart.
  EXPECT_EQ(fnv1a("foobar", 6, kFnv1aShortOffset), 0x88fad7c0a8ff07f2ull);
  // Chained pieces hash like the whole.
  EXPECT_EQ(fnv1a("bar", 3, fnv1a("foo", 3, kFnv1aShortOffset)), fnv1a("foobar", 6, kFnv1aShortOffset));
  uint64_t h = kFnv1aOffset;
  for (unsigned char c : std::string("foobar")) h = fnv1a_step(h, c);
  EXPECT_EQ(h, 0x85944171f73967e8ull);
}

TEST(Hash, SplitMix64MatchesTheReferenceSequenceAndThePairForm) {
  // splitmix64 seeded with 0: the first output (Steele, Lea & Flood; Vigna's reference code).
  EXPECT_EQ(splitmix64_mix(0 + kGoldenGamma), 0xe220a8397b1dcdafull);
  // The counter-based pair form: mix(a * gamma + b + 0x632BE59BD9B4E019), value computed apart.
  EXPECT_EQ(splitmix64_pair(3, 5), 0xafa718f2950a479full);
  EXPECT_NE(splitmix64_pair(3, 5), splitmix64_pair(5, 3));
}

TEST(Jsonl, RewriteKeepsTheLinesBelowTheLimitAndLeavesAMissingFileMissing) {
  const fs::path dir = fs::temp_directory_path() / ("ouro_test_jsonl_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path file = dir / "rounds.jsonl";
  rewrite_jsonl(file, [](const std::string& t) { return t + "x"; });
  EXPECT_FALSE(fs::exists(file));
  std::ofstream(file) << "{\"round\":0,\"a\":1}\nnot json\n{\"round\":2}\n{\"b\":3}\n{\"round\":1}";
  rewrite_jsonl(file, [](const std::string& t) { return jsonl_lines_below(t, "round", 2); });
  // The torn last line (no newline) is kept whole with one; a record without the key counts as 0.
  EXPECT_EQ(read(file), "{\"round\":0,\"a\":1}\n{\"b\":3}\n{\"round\":1}\n");
  EXPECT_FALSE(fs::exists(dir / "rounds.jsonl.tmp"));
  fs::remove_all(dir);
}

// ouro/choice.h: one table of names per enum gives parsing, printing and the listed choices.
namespace {
enum class Fruit { apple, pear, fig };
constexpr std::array<std::string_view, 3> choice_names(Fruit) { return {"apple", "pear", "fig"}; }
}  // namespace

TEST(Choice, NamesParseAndListFromOneTable) {
  for (Fruit f : {Fruit::apple, Fruit::pear, Fruit::fig}) EXPECT_EQ(parse_choice<Fruit>(name_of(f)), f);
  EXPECT_EQ(name_of(Fruit::fig), "fig");
  EXPECT_FALSE(parse_choice<Fruit>("Fig"));
  EXPECT_FALSE(parse_choice<Fruit>(""));
  EXPECT_EQ(choice_list<Fruit>(), "apple|pear|fig");
  EXPECT_EQ(choice_list<Fruit>(", "), "apple, pear, fig");
  static_assert(parse_choice<Fruit>("pear") == Fruit::pear);  // usable at compile time
}
