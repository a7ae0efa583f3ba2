// Token shards in llm.c's format and the training data loader.
//
// Shard file: 256 x int32 header, then the tokens.
//   header[0] = 20240520 (magic), header[1] = version, header[2] = number of tokens.
//   version 1: uint16 tokens (vocabularies up to 65536), version 2: uint32 tokens.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ouro {

class Tokenizer;

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersionU16 = 1;
constexpr int32_t kShardVersionU32 = 2;
constexpr int kByteVocab = 257;     // byte-level tokens 0..255 + <|endoftext|>
constexpr int kByteEot = 256;

// Writes tokens atomically (temp file, fsync, rename); uint16 when vocab_size <= 65536.
void write_shard(const std::filesystem::path& path, const std::vector<uint32_t>& tokens,
                 int vocab_size);

// A validated shard, read with pread: each read copies the tokens it needs (a private snapshot),
// so a file truncated or rewritten in place while in use gives an error naming it, never a
// SIGBUS as a memory map would. A read checks first that the file (device, inode, size,
// modification time) is still the one validated at open. release() closes the descriptor (a
// loader over thousands of shards holds one at a time); the next read reopens and rechecks. Errors name the file
// and what is wrong (bad magic, unknown version, size disagreeing with the header, a change).
class Shard {
 public:
  explicit Shard(const std::filesystem::path& path);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  size_t size() const { return n_tokens_; }
  // Tokens [first, first + count) into out (count <= size() - first).
  void read(size_t first, size_t count, uint32_t* out) const;
  // One token, through a small cache of the block around it: for tests and scans, not threads.
  uint32_t operator[](size_t i) const;
  int version() const { return version_; }
  const std::filesystem::path& path() const { return path_; }
  // Throws when the file is no longer the one validated at open.
  void check_unchanged() const;
  void release() const;

 private:
  std::filesystem::path path_;
  mutable int fd_ = -1;
  uint64_t dev_ = 0, ino_ = 0;
  size_t file_bytes_ = 0;
  int64_t mtime_ns_ = 0;
  size_t n_tokens_ = 0;
  int version_ = 0;
  mutable std::vector<uint32_t> cache_;  // operator[]'s block
  mutable size_t cache_first_ = 0;
};

// Files named by a path, a directory (all *.bin inside) or a glob pattern (*, ?), sorted.
// Errors if nothing matches.
std::vector<std::filesystem::path> expand_data_paths(const std::string& spec);

// Where a loader stands; saved in checkpoints so that a resumed run reads the same windows.
struct LoaderPosition {
  uint64_t epoch = 0;
  uint64_t cursor = 0;  // index of the next window in this epoch's order
};
void to_json(nlohmann::json& j, const LoaderPosition& p);
void from_json(const nlohmann::json& j, LoaderPosition& p);

// Draws batches of B windows of T+1 tokens (inputs = first T, targets = last T).
// Windows start every T tokens in each shard. With shuffle, each epoch's window order is a
// permutation seeded by (seed, epoch); without, windows come in file order. Rank r of W takes
// windows [cursor + r*B, cursor + (r+1)*B) and the cursor advances W*B per batch, so W ranks with
// batch B read exactly the windows one rank with batch W*B reads. A batch never straddles
// epochs: when fewer than W*B windows remain the next epoch begins.
class DataLoader {
 public:
  DataLoader(const std::string& spec, int B, int T, int rank, int world, uint64_t seed,
             bool shuffle);
  ~DataLoader();
  void next_batch(int* inputs, int* targets);  // each B*T ints
  LoaderPosition position() const;
  void set_position(const LoaderPosition& p);
  size_t num_windows() const;             // per epoch, over all ranks
  size_t batches_per_epoch() const;       // full batches of W*B windows
  int max_token() const;                  // largest token id seen (for vocabulary checks)
  // Window w (0 <= w < num_windows(), file order): its T+1 tokens as inputs and targets, each T
  // ints. For readers that need every window once (evaluation scores a last, partial batch).
  void read_window(uint64_t w, int* inputs, int* targets) const;
  // Fails naming the shard, the byte offset and the token when any token is >= vocab_size;
  // `what` says where the data came from ("data.train runs/x.bin", "eval --data x.bin").
  void check_vocabulary(int vocab_size, const std::string& what) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `ouro prepare --task` writes <out_prefix>_train.bin and <out_prefix>_val.bin (src/loop).
struct PrepareResult {
  std::filesystem::path train, val;
  size_t train_tokens = 0, val_tokens = 0;
  size_t vocab_size = 0;
};

// Corpus preparation, streamed in bounded memory: documents are read, encoded on `threads`
// threads and dealt into train and val by blocks of block_tokens (the last of every
// round(1/val_frac) blocks goes to val), each split rolling over shards of shard_tokens:
// PREFIX_train_000000.bin, ..., PREFIX_val_000000.bin, ..., each written atomically, and
// PREFIX.manifest.json (rewritten atomically after every shard; "complete" once all are).
// Memory holds one batch of text (batch_bytes) and its tokens, whatever the corpus size.
// Inputs: paths or "-" (standard input); .gz and .zst are decompressed as read. Text inputs are
// one document each; JSONL inputs (jsonl, or a name ending .jsonl, .jsonl.gz, .jsonl.zst) one
// document per line, the string under text_key. A malformed line is an error naming the file
// and line, or is skipped and counted with skip_bad. An interrupted prepare leaves no partial
// shard (only hidden .tmp files, removed by the next run); rerunning the same command
// rewrites the same shards and removes shards of an earlier run past the new last one.
struct PrepareOptions {
  std::vector<std::string> inputs;
  std::filesystem::path out_prefix;
  const Tokenizer* tokenizer = nullptr;  // null: byte-level (tokens are bytes, <|endoftext|> 256)
  std::string tokenizer_file;            // recorded in the manifest with its hash
  double val_frac = 0.05;
  size_t block_tokens = 8192;
  uint64_t shard_tokens = 100'000'000;
  bool jsonl = false;
  std::string text_key = "text";
  bool skip_bad = false;
  int threads = 0;  // 0 = all cores
  bool progress = false;
  size_t batch_bytes = 16 << 20;  // text per encoding batch (tests make it small)
  std::string command;            // recorded in the manifest
};
struct PrepareSummary {
  std::vector<std::filesystem::path> train, val;  // the shards, in order
  uint64_t train_tokens = 0, val_tokens = 0, documents = 0, bad_lines = 0, input_bytes = 0;
  size_t vocab_size = 0;
  double peak_rss_mb = 0;  // VmHWM from /proc/self/status at the end
  std::filesystem::path manifest;
};
PrepareSummary prepare_corpus(const PrepareOptions& opt);

}  // namespace ouro
