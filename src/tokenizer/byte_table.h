// A read-mostly hash table from byte strings to uint32 (token bytes -> rank), built once and
// probed millions of times per second by the encoder: open addressing with linear probing over
// one flat slot array, keys packed in one arena, a 32-bit hash tag per slot so a probe rarely
// touches the arena for a non-matching key.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace ouro::tok {

inline uint64_t hash_bytes(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
  }
  h *= 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 32);
}

class ByteTable {
 public:
  static constexpr uint32_t kMissing = 0xFFFFFFFFu;

  ByteTable() { rehash(16); }

  // Returns false (and changes nothing) when the key is already present.
  bool insert(std::string_view key, uint32_t value) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
    const uint64_t h = hash_bytes(key.data(), key.size());
    size_t i = h & mask_;
    while (slots_[i].off != kEmpty) {
      if (matches(slots_[i], h, key.data(), key.size())) return false;
      i = (i + 1) & mask_;
    }
    slots_[i] = {static_cast<uint32_t>(h >> 32), value, static_cast<uint32_t>(arena_.size()),
                 static_cast<uint32_t>(key.size())};
    arena_.append(key);
    ++size_;
    return true;
  }

  uint32_t find(const void* key, size_t n) const {
    const uint64_t h = hash_bytes(key, n);
    size_t i = h & mask_;
    while (slots_[i].off != kEmpty) {
      if (matches(slots_[i], h, key, n)) return slots_[i].value;
      i = (i + 1) & mask_;
    }
    return kMissing;
  }
  uint32_t find(std::string_view key) const { return find(key.data(), key.size()); }
  size_t size() const { return size_; }

 private:
  static constexpr uint32_t kEmpty = 0xFFFFFFFFu;
  struct Slot {
    uint32_t tag, value, off, len;
  };

  bool matches(const Slot& s, uint64_t h, const void* key, size_t n) const {
    return s.tag == static_cast<uint32_t>(h >> 32) && s.len == n &&
           std::memcmp(arena_.data() + s.off, key, n) == 0;
  }

  void rehash(size_t n_slots) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(n_slots, Slot{0, 0, kEmpty, 0});
    mask_ = n_slots - 1;
    for (const Slot& s : old) {
      if (s.off == kEmpty) continue;
      const uint64_t h = hash_bytes(arena_.data() + s.off, s.len);
      size_t i = h & mask_;
      while (slots_[i].off != kEmpty) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
  std::string arena_;
};

}  // namespace ouro::tok
