// Rolling shards for `ouro prepare`: tokens stream into PREFIX_SPLIT_000000.bin, ..., each
// holding at most shard_tokens tokens. A shard is written to a hidden temporary beside it
// (.PREFIX_SPLIT_NNNNNN.bin.tmp), its header patched with the count at the end, fsynced and
// renamed: a reader, or an interrupted prepare, never sees a partial shard. Memory holds one
// write buffer.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ouro::data {

struct ShardInfo {
  std::filesystem::path path;
  uint64_t tokens = 0, documents = 0;  // documents: <|endoftext|> tokens in the shard
};

class ShardWriter {
 public:
  ShardWriter(std::filesystem::path prefix, std::string split, uint64_t shard_tokens, size_t vocab_size,
              uint32_t eot);
  ~ShardWriter();  // an unfinished shard's temporary is removed
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends tokens; calls on_shard(info) after each shard is complete and renamed.
  template <class OnShard>
  void append(const uint32_t* t, size_t n, OnShard&& on_shard) {
    while (n > 0) {
      if (fd_ < 0) open_next();
      const size_t take = static_cast<size_t>(std::min<uint64_t>(n, shard_tokens_ - cur_.tokens));
      write_tokens(t, take);
      t += take;
      n -= take;
      if (cur_.tokens == shard_tokens_) on_shard(close_current());
    }
  }
  // Completes the last shard if it holds tokens; true and *info then.
  bool finish(ShardInfo* info);
  const std::vector<ShardInfo>& shards() const { return done_; }

 private:
  void open_next();
  void write_tokens(const uint32_t* t, size_t n);
  void flush();
  ShardInfo close_current();

  std::filesystem::path prefix_;
  std::string split_;
  uint64_t shard_tokens_;
  size_t vocab_;
  uint32_t eot_;
  bool u16_;
  int fd_ = -1;
  std::filesystem::path tmp_;
  ShardInfo cur_;
  std::vector<char> buf_;
  std::vector<ShardInfo> done_;
};

// PREFIX_SPLIT_NNNNNN.bin and its temporary's name.
std::filesystem::path shard_path(const std::filesystem::path& prefix, const std::string& split, size_t index);
std::filesystem::path temp_path_of(const std::filesystem::path& shard);

}  // namespace ouro::data
