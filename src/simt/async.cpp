// OURO_SIMT_ASYNC: queued operations, their order, and the reports of unordered accesses
// (<ouro/simt/async.h> says what is emulated; this file says how).
//
// Ordering. Each operation depends on the previous one of its stream; an operation on the
// legacy default stream also on the last one of every blocking stream, and one on a blocking
// stream on the last legacy one; cudaStreamWaitEvent adds the event's marker operation; NCCL
// operations run in issue order. A synchronising call runs the closure of what it waits for,
// picking among ready operations by OURO_SIMT_ORDER.
//
// Happens-before. Vector clocks indexed by stream: an operation's clock is its stream's, joined
// with what the host knows (everything issued after a synchronisation comes after what it
// covered), with the blocking streams' (legacy) or the legacy stream's (blocking), and with a
// waited event's. Operation A is before B iff A's own entry <= B's clock at A's stream. The
// history keeps, per stream and byte range, the accesses the host has not yet synchronised
// with; a new access overlapping one of another stream, one of them a write, unordered, is a
// report.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "ouro/simt/report.h"
#include "simt/async_engine.h"
#include "simt/capture.h"
#include "simt/scheduler.h"
#include "simt/text.h"

namespace ouro::simt {
namespace detail {
namespace {

using VC = std::vector<std::uint64_t>;

std::uint64_t at(const VC& v, unsigned i) { return i < v.size() ? v[i] : 0; }
void join(VC& into, const VC& other) {
  if (into.size() < other.size()) into.resize(other.size(), 0);
  for (std::size_t i = 0; i < other.size(); ++i) into[i] = std::max(into[i], other[i]);
}

struct StreamInfo {
  bool blocking = true;
  VC vc;
  std::uint64_t last = 0;  // the last operation issued on it (0: none)
};

struct Op {
  std::uint64_t id = 0;
  unsigned stream = 0;
  std::uint64_t clock = 0;  // its own entry at its stream
  VC vc;
  std::vector<std::uint64_t> deps;
  OpSpec spec;
};

// One access that the host has not synchronised with yet.
struct Hist {
  std::uintptr_t lo = 0, hi = 0;
  bool write = false;
  unsigned stream = 0;
  std::uint64_t clock = 0;
  const char* what = "";
  const void* kernel = nullptr;
  std::string where;
};

thread_local std::string tl_site;

std::string stream_name(unsigned id, bool blocking) {
  if (id == 0) return "the legacy default stream";
  return cat("stream ", id, blocking ? "" : " (non-blocking)");
}

std::string hex(std::uintptr_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

std::string kernel_label(const void* kernel) {
  Launch l;
  l.params.kernel = kernel;
  return kernel_name(&l);
}

class Engine {
 public:
  static Engine& get() {
    static Engine* e = new Engine;  // never destroyed: streams may be used during static destruction
    return *e;
  }

  std::recursive_mutex mu;

  unsigned new_stream(bool blocking) {
    std::lock_guard lock(mu);
    streams_.push_back(StreamInfo{blocking, {}, 0});
    return static_cast<unsigned>(streams_.size() - 1);
  }

  VC stream_clock(unsigned s) {
    std::lock_guard lock(mu);
    VC v = streams_.at(s).vc;
    join(v, host_);
    return v;
  }

  std::uint64_t enqueue(OpSpec spec, VC* vc_out) {
    std::lock_guard lock(mu);
    auto op = std::make_unique<Op>();
    op->id = next_id_++;
    op->stream = spec.stream;
    StreamInfo& st = streams_.at(spec.stream);
    VC vc = st.vc;
    join(vc, host_);
    auto dep = [&](std::uint64_t d) {
      if (d && pending_.count(d)) op->deps.push_back(d);
    };
    dep(st.last);
    if (spec.stream == 0) {
      for (std::size_t i = 1; i < streams_.size(); ++i)
        if (streams_[i].blocking) {
          join(vc, streams_[i].vc);
          dep(streams_[i].last);
        }
    } else if (st.blocking) {
      join(vc, streams_[0].vc);
      dep(streams_[0].last);
    }
    if (spec.wait_vc) join(vc, *spec.wait_vc);
    dep(spec.wait_op);
    if (spec.nccl) {
      dep(last_nccl_);
      last_nccl_ = op->id;
    }
    if (vc.size() <= spec.stream) vc.resize(spec.stream + 1, 0);
    op->clock = ++vc[spec.stream];
    op->vc = vc;
    check(*op, spec);
    // The stream's clock; the legacy stream's work comes before later work of blocking streams.
    StreamInfo& s2 = streams_.at(spec.stream);
    s2.vc = vc;
    s2.last = op->id;
    if (spec.stream == 0)
      for (std::size_t i = 1; i < streams_.size(); ++i)
        if (streams_[i].blocking) join(streams_[i].vc, vc);
    record(*op, spec);
    op->spec = std::move(spec);
    if (vc_out) *vc_out = vc;
    const std::uint64_t id = op->id;
    pending_.emplace(id, std::move(op));
    return id;
  }

  void complete(std::uint64_t target) {
    std::lock_guard lock(mu);
    VC learned;
    {
      auto it = pending_.find(target);
      if (it != pending_.end()) learned = it->second->vc;
    }
    run_closure({target});
    if (!learned.empty()) host_learns(learned);
  }

  void complete_stream(unsigned s) {
    std::lock_guard lock(mu);
    const VC vc = streams_.at(s).vc;
    run_closure({streams_.at(s).last});
    host_learns(vc);
  }

  void drain_all() {
    std::lock_guard lock(mu);
    std::vector<std::uint64_t> all;
    for (auto& [id, op] : pending_) all.push_back(id);
    run_closure(all);
    for (auto& s : streams_) host_learns(s.vc);
  }

  std::size_t queued() {
    std::lock_guard lock(mu);
    return pending_.size();
  }

  void host_learns(const VC& vc) {
    std::lock_guard lock(mu);
    join(host_, vc);
    std::erase_if(hist_, [&](const Hist& h) { return h.clock <= at(host_, h.stream); });
  }

 private:
  Engine() { streams_.push_back(StreamInfo{true, {}, 0}); }

  // Reports the first access of `op` that overlaps an unordered one of another stream.
  void check(const Op& op, const OpSpec& spec) {
    for (const Access& a : spec.accesses) {
      if (!a.ptr || a.bytes == 0) continue;
      const auto lo = reinterpret_cast<std::uintptr_t>(a.ptr), hi = lo + a.bytes;
      for (const Hist& h : hist_) {
        if (h.stream == op.stream || h.hi <= lo || hi <= h.lo || !(h.write || a.write)) continue;
        if (h.clock <= at(op.vc, h.stream)) continue;  // ordered
        report_race(op, spec, a, h);
      }
    }
  }

  [[noreturn]] void report_race(const Op& op, const OpSpec& spec, const Access& a, const Hist& h) {
    auto describe = [](const char* what, const void* kernel) {
      return kernel ? cat("kernel ", kernel_label(kernel)) : std::string(what);
    };
    const bool host_read = std::strstr(spec.what, "to host") != nullptr && std::strstr(spec.what, "cudaMemcpy (") != nullptr;
    const bool frees = std::strstr(spec.what, "Free") != nullptr;
    const auto lo = reinterpret_cast<std::uintptr_t>(a.ptr);
    const std::uintptr_t olo = std::max(lo, h.lo), ohi = std::min(lo + a.bytes, h.hi);
    std::string msg;
    if (host_read) msg = "host read of device memory that a queued operation still writes: ";
    else if (frees) msg = "memory freed while a queued operation still uses it: ";
    else msg = "two streams touch the same memory with no event ordering them: ";
    msg += cat(describe(spec.what, spec.kernel), " on ", stream_name(op.stream, streams_[op.stream].blocking),
               a.write ? " writes" : " reads", " bytes [", hex(olo), ", +", ohi - olo,
               "), which ", describe(h.what, h.kernel), " queued on ", stream_name(h.stream, streams_[h.stream].blocking),
               " at ", h.where.empty() ? std::string("?") : h.where, h.write ? " writes" : " reads",
               "; add cudaStreamWaitEvent or a synchronisation between them");
    Report r;
    r.kind = BugKind::stream_race;
    split_site(spec.where, r);
    r.message = std::move(msg);
    report(std::move(r));
  }

  static void split_site(const std::string& where, Report& r) {
    const auto colon = where.rfind(':');
    if (colon == std::string::npos) return;
    r.file = where.substr(0, colon);
    r.line = static_cast<unsigned>(std::strtoul(where.c_str() + colon + 1, nullptr, 10));
  }

  void record(const Op& op, const OpSpec& spec) {
    for (const Access& a : spec.accesses) {
      if (!a.ptr || a.bytes == 0) continue;
      const auto lo = reinterpret_cast<std::uintptr_t>(a.ptr), hi = lo + a.bytes;
      // The same stream's earlier access of the same range is ordered before this one: replace it.
      bool replaced = false;
      for (Hist& h : hist_)
        if (h.stream == op.stream && h.lo == lo && h.hi == hi && h.write == a.write) {
          h.clock = op.clock, h.what = spec.what, h.kernel = spec.kernel, h.where = spec.where;
          replaced = true;
          break;
        }
      if (!replaced) hist_.push_back(Hist{lo, hi, a.write, op.stream, op.clock, spec.what, spec.kernel, spec.where});
    }
  }

  // Runs the pending operations in the dependency closure of `targets`.
  void run_closure(const std::vector<std::uint64_t>& targets) {
    if (running_) return;  // an operation's own work never synchronises with the queue
    running_ = true;
    struct Reset {
      bool& r;
      ~Reset() { r = false; }
    } reset{running_};
    std::vector<std::uint64_t> want, stack(targets.begin(), targets.end());
    std::map<std::uint64_t, bool> seen;
    while (!stack.empty()) {
      const std::uint64_t id = stack.back();
      stack.pop_back();
      auto it = pending_.find(id);
      if (it == pending_.end() || seen[id]) continue;
      seen[id] = true;
      want.push_back(id);
      for (std::uint64_t d : it->second->deps) stack.push_back(d);
    }
    std::sort(want.begin(), want.end());
    const RunOrder order = run_order();
    while (!want.empty()) {
      std::vector<std::size_t> ready;
      for (std::size_t i = 0; i < want.size(); ++i) {
        const Op& op = *pending_.at(want[i]);
        bool ok = true;
        for (std::uint64_t d : op.deps) ok = ok && !pending_.count(d);
        if (ok) ready.push_back(i);
      }
      if (ready.empty()) break;  // cannot happen: dependencies point to earlier operations
      std::size_t pick = ready.front();
      if (order.order == Order::reverse) {
        pick = ready.back();
      } else if (order.order == Order::shuffle) {
        if (!rng_seeded_) rng_.seed(order.seed), rng_seeded_ = true;
        pick = ready[std::uniform_int_distribution<std::size_t>(0, ready.size() - 1)(rng_)];
      }
      const std::uint64_t id = want[pick];
      want.erase(want.begin() + static_cast<std::ptrdiff_t>(pick));
      std::unique_ptr<Op> op = std::move(pending_.at(id));
      pending_.erase(id);
      if (op->spec.run) op->spec.run();
    }
  }

  std::vector<StreamInfo> streams_;
  VC host_;
  std::map<std::uint64_t, std::unique_ptr<Op>> pending_;
  std::uint64_t next_id_ = 1;
  std::uint64_t last_nccl_ = 0;
  std::vector<Hist> hist_;
  bool running_ = false;
  std::mt19937_64 rng_;
  bool rng_seeded_ = false;
};

std::atomic<int> g_async{-1};

}  // namespace

void set_call_site(const char* file, int line) { tl_site = cat(file, ":", line); }
std::string take_call_site() { return std::exchange(tl_site, std::string()); }

unsigned new_stream_id(bool blocking) { return Engine::get().new_stream(blocking); }
unsigned stream_id(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return 0;
  return s->id;
}
std::uint64_t enqueue(OpSpec spec, std::vector<std::uint64_t>* vc_out) {
  return Engine::get().enqueue(std::move(spec), vc_out);
}
void complete(std::uint64_t op) { Engine::get().complete(op); }
void complete_stream(unsigned stream) { Engine::get().complete_stream(stream); }
std::vector<std::uint64_t> stream_clock(unsigned stream) { return Engine::get().stream_clock(stream); }
void host_learns(const std::vector<std::uint64_t>& vc) { Engine::get().host_learns(vc); }

}  // namespace detail

bool async_mode() {
  int v = detail::g_async.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* e = std::getenv("OURO_SIMT_ASYNC");
    const int on = e && *e && std::string(e) != "0" ? 1 : 0;
    int unset = -1;
    detail::g_async.compare_exchange_strong(unset, on);
    v = detail::g_async.load();
  }
  return v != 0;
}

void set_async_mode(bool on) {
  drain_all();
  detail::g_async.store(on ? 1 : 0);
}

void enqueue_host_op(cudaStream_t stream, const char* what, std::vector<Access> accesses, std::function<void()> run,
                     bool nccl) {
  if (detail::capturing(stream)) {  // NCCL's collectives can be captured; so can these
    detail::NodeSpec node;
    node.what = what;
    node.where = detail::take_call_site();
    node.accesses = std::move(accesses);
    node.run = std::move(run);
    node.nccl = nccl;
    detail::capture_node(stream, std::move(node));  // an invalidated capture: cudaGetLastError says so
    return;
  }
  if (!async_mode()) {
    run();
    return;
  }
  detail::OpSpec spec;
  spec.stream = detail::stream_id(stream);
  spec.what = what;
  spec.where = detail::take_call_site();
  spec.accesses = std::move(accesses);
  spec.run = std::move(run);
  spec.nccl = nccl;
  detail::enqueue(std::move(spec));
}

void drain_all() { detail::Engine::get().drain_all(); }
std::size_t queued_ops() { return detail::Engine::get().queued(); }

}  // namespace ouro::simt
