// One backend allocation carved into many tensors. The model plans every tensor of a kind
// (activations, KV caches) for its largest shape up front, so a training step never allocates
// and the backend holds one block instead of hundreds: fewer cudaMalloc calls, one number to
// report, and no fragmentation between runs of different shapes.
#pragma once
#include <cstddef>
#include <initializer_list>
#include <utility>
#include <vector>

#include "ouro/checked.h"
#include "ouro/error.h"
#include "ouro/ops.h"

namespace ouro {

// One allocation from the backend, released with it.
struct Buffer {
  Ops* ops = nullptr;
  void* ptr = nullptr;
  size_t bytes = 0;
  Buffer() = default;
  Buffer(Ops& o, size_t b) : ops(&o), ptr(o.alloc(b)), bytes(b) {}
  Buffer(Buffer&& x) noexcept : ops(x.ops), ptr(x.ptr), bytes(x.bytes) { x.ptr = nullptr; }
  Buffer& operator=(Buffer&& x) noexcept {
    std::swap(ops, x.ops), std::swap(ptr, x.ptr), std::swap(bytes, x.bytes);
    return *this;
  }
  ~Buffer() {
    if (ptr) ops->dealloc(ptr);
  }
  float* f32() const { return static_cast<float*>(ptr); }
};

// A tensor inside an arena: a pointer the arena sets, owning nothing.
struct Tensor {
  void* ptr = nullptr;
  float* f32() const { return static_cast<float*>(ptr); }
};

// Collects tensors and their sizes, then makes the one allocation and points each tensor into
// it. Offsets are 256-byte aligned: what cudaMalloc guarantees for a separate allocation, so
// every kernel's vectorised path sees the same alignment it would there (and results cannot
// depend on being carved from an arena).
class ArenaPlan {
 public:
  static constexpr size_t kAlign = 256;
  // Sizes derive from the model's shape and batch: a sum that wraps is refused, never planned.
  void add(Tensor& t, size_t bytes) { add_shared({&t}, bytes); }
  // One slot of `bytes` that several tensors point into: for buffers never live at the same
  // time (a forward-only output and a backward-only gradient), so the arena holds the larger
  // once instead of both.
  void add_shared(std::initializer_list<Tensor*> tensors, size_t bytes) {
    for (Tensor* t : tensors) slots_.emplace_back(t, total_);
    const auto padded = checked_add(bytes, kAlign - 1);
    const auto next = padded ? checked_add(total_, *padded / kAlign * kAlign) : std::nullopt;
    if (!next) fail("an arena of more than 2^64 bytes was planned ({} tensors so far)", slots_.size());
    total_ = *next;
    ++distinct_;
  }
  size_t bytes() const { return total_; }
  size_t size() const { return slots_.size(); }  // tensors
  size_t slots() const { return distinct_; }    // distinct slots (shared ones counted once)
  // The allocation (zero-filled, as Ops::alloc is); every added tensor now points into it.
  Buffer allocate(Ops& ops) const {
    Buffer b(ops, total_);
    for (const auto& [t, offset] : slots_) t->ptr = static_cast<char*>(b.ptr) + offset;
    return b;
  }

 private:
  std::vector<std::pair<Tensor*, size_t>> slots_;
  size_t total_ = 0;
  size_t distinct_ = 0;
};

}  // namespace ouro
