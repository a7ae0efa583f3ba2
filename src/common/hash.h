// The project's two small hashes, one definition each (results are part of file formats, seeds
// and fingerprints: never change their arithmetic).
//  - FNV-1a 64 (Fowler, Noll, Vo): fingerprints of bytes (weights agreeing across ranks, the
//    tokenizer file in a shard manifest, an NCCL id, buffer samples) and n-gram keys.
//  - splitmix64 (Steele, Lea & Flood): its finalizer, and the counter-based form that hashes a
//    pair (seed, counter) so a draw never depends on how many came before.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ouro {

constexpr uint64_t kFnv1aOffset = 0xcbf29ce484222325ull;  // the standard offset basis
constexpr uint64_t kFnv1aPrime = 0x100000001b3ull;
// The offset basis most of the engine's fingerprints were first written with: the standard one's
// decimal digits (14695981039346656037) less the last. Shard manifests ("fnv1a64"), the rank
// agreement fingerprints and the n-gram keys use it, so their values stay what they were.
constexpr uint64_t kFnv1aShortOffset = 1469598103934665603ull;

// One FNV-1a step: h absorbs the value v (a byte, or a wider unit where the caller says so).
constexpr uint64_t fnv1a_step(uint64_t h, uint64_t v) { return (h ^ v) * kFnv1aPrime; }

// FNV-1a over n bytes, continuing from h (chain calls to hash a stream piecewise). Callers name
// the basis they start from: kFnv1aOffset or kFnv1aShortOffset.
inline uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = fnv1a_step(h, p[i]);
  return h;
}

constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;  // splitmix64's increment

// splitmix64's output function (the "mix64" finalizer, Stafford's variant 13).
constexpr uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Counter-based splitmix64 of a pair: a pure function of (a, b), e.g. (seed, counter).
constexpr uint64_t splitmix64_pair(uint64_t a, uint64_t b) {
  return splitmix64_mix(a * kGoldenGamma + b + 0x632BE59BD9B4E019ull);
}

}  // namespace ouro
