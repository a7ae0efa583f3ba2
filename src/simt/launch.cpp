// Launch validation, run orders and the pool of OS threads that run a grid's blocks.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ouro/simt/device_model.h"
#include "ouro/simt/hw_math.h"
#include "ouro/simt/report.h"
#include "ouro/simt/async.h"
#include "simt/async_engine.h"
#include "simt/capture.h"
#include "simt/runtime_state.h"
#include "simt/text.h"
#include "simt/scheduler.h"

namespace ouro::simt {

// ---- run order ---------------------------------------------------------------------------------

RunOrder parse_run_order(const std::string& text) {
  if (text == "forward" || text.empty()) return {Order::forward, 0};
  if (text == "reverse") return {Order::reverse, 0};
  if (text == "shuffle") return {Order::shuffle, 1};
  if (text.rfind("shuffle:", 0) == 0) {
    const std::string s = text.substr(8);
    char* end = nullptr;
    const unsigned long long seed = std::strtoull(s.c_str(), &end, 10);
    if (!s.empty() && end && *end == '\0') return {Order::shuffle, seed};
  }
  throw std::invalid_argument("run order must be forward, reverse, shuffle or shuffle:SEED, got '" + text + "'");
}

std::string to_string(RunOrder o) {
  switch (o.order) {
    case Order::forward: return "forward";
    case Order::reverse: return "reverse";
    case Order::shuffle: return "shuffle:" + std::to_string(o.seed);
  }
  return "?";
}

namespace {

std::mutex g_config_mu;
bool g_order_set = false;
RunOrder g_order;
unsigned g_threads = 0;  // 0 = not decided yet
bool g_fill_set = false;
SharedFill g_fill = SharedFill::nan;

RunOrder order_from_env() {
  const char* e = std::getenv("OURO_SIMT_ORDER");
  if (!e) return {};
  try {
    return parse_run_order(e);
  } catch (const std::invalid_argument& ex) {
    Report r;
    r.kind = BugKind::bad_launch;
    r.message = std::string("OURO_SIMT_ORDER: ") + ex.what();
    report(std::move(r));
  }
}

unsigned threads_from_env() {
  if (const char* e = std::getenv("OURO_SIMT_THREADS")) {
    const long n = std::strtol(e, nullptr, 10);
    if (n > 0) return static_cast<unsigned>(std::min(n, 256L));
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

SharedFill fill_from_env() {
  const char* e = std::getenv("OURO_SIMT_SMEM");
  if (!e) return SharedFill::nan;
  try {
    return parse_shared_fill(e);
  } catch (const std::invalid_argument& ex) {
    Report r;
    r.kind = BugKind::bad_launch;
    r.message = std::string("OURO_SIMT_SMEM: ") + ex.what();
    report(std::move(r));
  }
}

}  // namespace

namespace detail {
std::atomic<int> g_hw_math{-1};
bool hw_math_from_env() {
  const char* e = std::getenv("OURO_SIMT_HW_MATH");
  const bool on = e && *e && std::string(e) != "0";
  std::lock_guard lock(g_config_mu);
  int unset = -1;
  g_hw_math.compare_exchange_strong(unset, on ? 1 : 0);
  return g_hw_math.load() != 0;
}
}  // namespace detail

bool hw_math() {
  const int v = detail::g_hw_math.load();
  return v < 0 ? detail::hw_math_from_env() : v != 0;
}
void set_hw_math(bool on) {
  detail::g_hw_math.store(on ? 1 : 0);
}

SharedFill parse_shared_fill(const std::string& text) {
  if (text == "nan" || text.empty()) return SharedFill::nan;
  if (text == "stale") return SharedFill::stale;
  throw std::invalid_argument("shared memory fill must be nan or stale, got '" + text + "'");
}

SharedFill shared_fill() {
  std::lock_guard lock(g_config_mu);
  if (!g_fill_set) {
    g_fill = fill_from_env();
    g_fill_set = true;
  }
  return g_fill;
}

void set_shared_fill(SharedFill fill) {
  std::lock_guard lock(g_config_mu);
  g_fill = fill;
  g_fill_set = true;
}

RunOrder run_order() {
  std::lock_guard lock(g_config_mu);
  if (!g_order_set) {
    g_order = order_from_env();
    g_order_set = true;
  }
  return g_order;
}

void set_run_order(RunOrder order) {
  std::lock_guard lock(g_config_mu);
  g_order = order;
  g_order_set = true;
}

unsigned worker_threads() {
  std::lock_guard lock(g_config_mu);
  if (g_threads == 0) g_threads = threads_from_env();
  return g_threads;
}

void set_worker_threads(unsigned n) {
  std::lock_guard lock(g_config_mu);
  g_threads = std::max(1u, n);
}

std::uint64_t switch_count() { return detail::Worker::self().switches; }

// ---- the pool ----------------------------------------------------------------------------------

namespace {

// Helper OS threads wait for a grid; the launching thread works on it too. One grid at a time.
class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool;  // never destroyed: helpers may still wait at exit
    return *p;
  }

  void run(const Launch& launch, const std::vector<unsigned>* order, unsigned nblocks, unsigned nthreads) {
    std::lock_guard launch_lock(launch_mu_);
    {
      std::lock_guard lock(mu_);
      while (helpers_.size() + 1 < nthreads) helpers_.emplace_back([this] { helper(); });
      launch_ = &launch;
      order_ = order;
      nblocks_ = nblocks;
      next_.store(0, std::memory_order_relaxed);
      abort_.store(false, std::memory_order_relaxed);
      error_ = nullptr;
      wanted_ = std::min<unsigned>(nthreads, nblocks) - 1;
      ++generation_;
    }
    cv_.notify_all();
    work();
    // Every block is claimed (or the grid aborted): helpers that did not join yet need not.
    std::unique_lock lock(mu_);
    wanted_ = 0;
    done_cv_.wait(lock, [&] { return busy_ == 0; });
    launch_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void helper() {
    std::uint64_t seen = 0;
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return generation_ != seen && wanted_ > 0; });
      seen = generation_;
      --wanted_;
      ++busy_;
      lock.unlock();
      work();
      lock.lock();
      --busy_;
      done_cv_.notify_all();
    }
  }

  void work() {
    auto& w = detail::Worker::self();
    for (;;) {
      if (abort_.load(std::memory_order_relaxed)) return;
      const unsigned i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= nblocks_) return;
      const unsigned block = order_ ? (*order_)[i] : launch_->order.order == Order::reverse ? nblocks_ - 1 - i : i;
      try {
        w.run_block(*launch_, block);
      } catch (...) {
        std::lock_guard lock(mu_);
        if (!error_) error_ = std::current_exception();
        abort_.store(true, std::memory_order_relaxed);
        return;
      }
    }
  }

  std::mutex launch_mu_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> helpers_;
  const Launch* launch_ = nullptr;
  const std::vector<unsigned>* order_ = nullptr;
  unsigned nblocks_ = 0;
  std::atomic<unsigned> next_{0};
  std::atomic<bool> abort_{false};
  std::exception_ptr error_;
  unsigned wanted_ = 0;  // helpers still to join this grid
  unsigned busy_ = 0;
  std::uint64_t generation_ = 0;
};

}  // namespace

namespace {

// The launch as a queued operation or a graph node: the closure is copied (the caller's
// argument bundle dies with its statement, and a graph replays the arguments of the capture),
// with the pointer arguments as the accesses it makes.
detail::NodeSpec kernel_node(const LaunchParams& p) {
  struct Owned {
    LaunchParams p;
    ~Owned() { p.destroy(const_cast<void*>(p.closure)); }
  };
  auto owned = std::make_shared<Owned>();
  owned->p = p;
  owned->p.closure = p.clone(p.closure);
  detail::NodeSpec spec;
  spec.what = "kernel";
  spec.kernel = p.kernel;
  spec.where = detail::cat(p.where.file_name(), ":", p.where.line());
  struct Sink {
    std::vector<Access>* out;
    static void add(void* ctx, const void* ptr, bool write) {
      if (detail::classify(ptr) != detail::MemKind::other)
        static_cast<Sink*>(ctx)->out->push_back(Access{ptr, 1, write});
    }
  } sink{&spec.accesses};
  p.pointers(owned->p.closure, &Sink::add, &sink);
  spec.run = [owned] { detail::run_grid(owned->p); };
  return spec;
}

}  // namespace

cudaError_t launch_kernel(const LaunchParams& p) {
  if (in_kernel()) report(BugKind::bad_launch, "kernel launch from inside a kernel is not emulated", p.where);
  const dim3 g = p.grid, b = p.block;
  const unsigned long long threads = 1ull * b.x * b.y * b.z;
  cudaError_t err = cudaSuccess;
  if (g.x == 0 || g.y == 0 || g.z == 0 || b.x == 0 || b.y == 0 || b.z == 0 || threads > 1024 ||
      b.x > 1024 || b.y > 1024 || b.z > 64 || g.y > 65535 || g.z > 65535 || g.x > 0x7fffffffu) {
    err = cudaErrorInvalidConfiguration;
  } else if (p.shared_bytes > detail::max_dynamic_shared(p.kernel)) {
    err = cudaErrorInvalidValue;  // what the runtime returns for too much dynamic shared memory
  } else if (1ull * g.x * g.y * g.z > 0xffffffffull) {
    err = cudaErrorInvalidConfiguration;  // more blocks than the emulator indexes
  }
  if (err != cudaSuccess) {
    detail::set_last_error(err);
    return err;
  }
  if (detail::capturing(p.stream)) {  // a graph node with the arguments of this call
    if (!p.clone) report(BugKind::bad_launch, "a kernel launch without a copyable closure cannot be captured", p.where);
    return detail::capture_node(p.stream, kernel_node(p));
  }
  if (detail::is_legacy(p.stream))
    if (cudaError_t e = detail::capture_legacy_use(); e != cudaSuccess) return e;
  detail::note_work(p.stream);  // counts the host's waits that find work (device_model.h)
  if (p.clone && async_mode()) {
    detail::NodeSpec node = kernel_node(p);
    detail::OpSpec spec;
    spec.stream = detail::stream_id(p.stream);
    spec.what = node.what;
    spec.kernel = node.kernel;
    spec.where = std::move(node.where);
    spec.accesses = std::move(node.accesses);
    spec.run = std::move(node.run);
    detail::enqueue(std::move(spec));
    return cudaSuccess;
  }
  return detail::run_grid(p);
}

namespace detail {
cudaError_t run_grid(const LaunchParams& p) {
  const dim3 g = p.grid, b = p.block;
  const unsigned long long threads = 1ull * b.x * b.y * b.z;
  Launch launch;
  launch.params = p;
  launch.order = run_order();
  launch.fill = shared_fill();
  launch.threads_per_block = static_cast<unsigned>(threads);
  const unsigned nblocks = g.x * g.y * g.z;
  std::vector<unsigned> shuffled;
  if (launch.order.order == Order::shuffle) {
    shuffled.resize(nblocks);
    for (unsigned i = 0; i < nblocks; ++i) shuffled[i] = i;
    std::mt19937_64 rng(launch.order.seed);
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
  }
  Pool::get().run(launch, shuffled.empty() ? nullptr : &shuffled, nblocks, worker_threads());
  return cudaSuccess;
}
}  // namespace detail

}  // namespace ouro::simt
