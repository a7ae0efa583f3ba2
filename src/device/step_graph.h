// CUDA Graphs of the training step for DeviceOps (train.cuda_graph).
//
// Between Ops::begin_graph_step and Ops::end_graph_step, every device op DeviceOps is asked for
// goes through StepGraph::op with a signature (the op and every argument that reaches a kernel:
// pointers, shapes, scalars), and so does every Ops::stream_op: the data-parallel gradient
// exchange's collectives, which the device communicator enqueues on the capturing stream as
// graph nodes (buckets fork onto its own stream through an event and join back through another;
// host nodes around each one time it against dist.timeout_s). The first such step after a change
// CAPTURES: its ops run under stream capture, cut into segments at each point where the host
// waits for a result (StepGraph::output: the step's one readback of losses and gradient norms),
// each segment instantiated and launched at its end, so the captured step also runs. Later steps REPLAY: the
// model and trainer run their host code as before, each op only checks that its signature is
// the next one recorded, and each segment's graph is launched where the capture launched it.
//
// What changes from step to step never becomes a kernel argument: host inputs (tokens, targets,
// the embedding backward's grouping plan, AdamW's per-step scalars) go through StepGraph::input,
// which copies them into a fixed pinned buffer that the graph's copy node reads at replay.
// Anything else that differs (another batch shape, a different loss scale, a buffer the
// backend reallocated, an allocation inside the step) makes the op's signature differ or the
// epoch move: the ops of the open segment run uncaptured, the rest of the step too, and the
// next step captures again. A capture that fails (a kernel launcher that synchronises, say)
// falls back the same way and is logged with CUDA's error; after three failed captures in a
// row the step stays uncaptured. The results are bitwise those of the uncaptured step: the same
// kernels on the same data in the same order.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace ouro {

namespace step_graph_detail {  // at namespace scope: nvcc rejects vectors of these as nested types
struct Recorded {
  std::vector<uint64_t> sig;
  int segment = 0;
  int slot = -1;  // input / output: the pinned buffer
};
struct Segment {
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t done = nullptr;
  size_t ops = 0;
  bool in_flight = false;  // launched since the host last waited for the stream
};
struct Slot {
  void* pinned = nullptr;
  size_t bytes = 0;
};
}  // namespace step_graph_detail

class StepGraph {
 public:
  using Sig = std::vector<uint64_t>;
  struct Stats {
    int64_t captured = 0, replayed = 0, uncaptured = 0;  // steps
  };

  explicit StepGraph(cudaStream_t stream) : stream_(stream) {}
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  void begin_step();
  void end_step(bool ok);
  bool active() const { return mode_ != Mode::eager; }
  const Stats& stats() const { return stats_; }
  // What happened that a log should say (a capture, a fall-back and why), oldest first; taken
  // by the caller (the device library has no logger).
  std::vector<std::string> take_notes() { return std::exchange(notes_, {}); }
  // The backend's buffers moved (an allocation, a free, a scratch buffer that grew): graphs
  // captured before refer to the old ones.
  void note_realloc() { ++epoch_; }
  // What the step is, for the notes ("the training step" unless told; DeviceOps' decode graph:
  // "the decode step").
  void set_name(std::string name) { name_ = std::move(name); }

  // One device op: `device` launches it on the stream.
  void op(Sig sig, std::function<void()> device);
  // bytes from host memory to `dst` on the device (the host buffer may change after the call).
  void input(void* dst, const void* host, size_t bytes);
  // bytes at `src` on the device to host memory; the host waits for them.
  void output(void* dst, const void* src, size_t bytes);
  // Anything the graph cannot hold (an allocation, a synchronisation): the step goes on
  // uncaptured from here.
  void leave(const char* why);

  template <class... A>
  static Sig sig(const char* name, const A&... args) {
    Sig s{reinterpret_cast<uint64_t>(name)};
    (push(s, args), ...);
    return s;
  }

 private:
  enum class Mode { eager, capture, replay };
  using Recorded = step_graph_detail::Recorded;
  using Segment = step_graph_detail::Segment;
  using Slot = step_graph_detail::Slot;

  template <class T>
  static void push(Sig& s, const T& v) {
    if constexpr (std::is_pointer_v<T>) {
      s.push_back(reinterpret_cast<uint64_t>(v));
    } else if constexpr (std::is_floating_point_v<T>) {
      double d = static_cast<double>(v);
      uint64_t b;
      std::memcpy(&b, &d, sizeof b);
      s.push_back(b);
    } else {
      s.push_back(static_cast<uint64_t>(v));
    }
  }

  void begin_segment();
  void end_segment();  // capture: instantiate and launch; replay: launch
  bool next_matches(const Sig& sig);
  void fall_back(const std::string& why);
  void run_pending();
  int new_slot(size_t bytes);
  void drop_graphs();
  void wait_segment(int s);

  cudaStream_t stream_;
  Mode mode_ = Mode::eager;
  bool capturing_ = false;  // a segment's stream capture is open
  std::vector<Recorded> recorded_;
  std::vector<Segment> segments_;
  std::vector<Slot> slots_;
  bool valid_ = false;  // recorded_ and segments_ hold a whole captured step
  uint64_t epoch_ = 0, captured_epoch_ = 0;
  int failed_captures_ = 0;
  bool warmed_ = false;  // a step ran (the first is never captured: it sizes the buffers)
  std::string last_reason_;
  // The step in progress.
  size_t next_ = 0;       // replay: the recorded op expected next
  int segment_ = 0;       // the open segment
  size_t segment_ops_ = 0;
  int slots_used_ = 0;    // capture: slots handed out this step
  std::vector<std::function<void()>> pending_;  // the open segment's ops, uncaptured
  Stats stats_;
  std::vector<std::string> notes_;
  std::string name_ = "the training step";
};

}  // namespace ouro
