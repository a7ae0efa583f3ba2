// StepGraph (step_graph.h): capture, replay and the uncaptured fallback of the training step.
#include <ouro/cuda.h>

#include <exception>
#include <string>
#include <utility>

#include "device/step_graph.h"

namespace ouro {

namespace {
constexpr int kMaxFailedCaptures = 3;
}

StepGraph::~StepGraph() {
  if (capturing_) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream_, &g);
    if (g) cudaGraphDestroy(g);
  }
  drop_graphs();
  for (Slot& s : slots_) cudaFreeHost(s.pinned);
  (void)cudaGetLastError();
}

void StepGraph::drop_graphs() {
  for (Segment& s : segments_) {
    if (s.exec) cudaGraphExecDestroy(s.exec);
    if (s.done) cudaEventDestroy(s.done);
  }
  segments_.clear();
  recorded_.clear();
  valid_ = false;
}

void StepGraph::begin_step() {
  next_ = 0;
  segment_ = 0;
  segment_ops_ = 0;
  slots_used_ = 0;
  pending_.clear();
  if (valid_ && captured_epoch_ == epoch_) {
    mode_ = Mode::replay;
    return;
  }
  if (valid_) notes_.push_back("the backend's buffers moved since the capture: capturing the step again");
  drop_graphs();
  captured_epoch_ = epoch_;
  if (!warmed_) {  // the first step allocates and sizes the backend's buffers: run it as is
    warmed_ = true;
    mode_ = Mode::eager;
    return;
  }
  mode_ = failed_captures_ < kMaxFailedCaptures ? Mode::capture : Mode::eager;
}

void StepGraph::end_step(bool ok) {
  if (!ok) {  // an error left the step half done: nothing of it is kept
    if (capturing_) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(stream_, &g);
      if (g) cudaGraphDestroy(g);
      capturing_ = false;
      (void)cudaGetLastError();
    }
    if (mode_ != Mode::eager) drop_graphs();
    pending_.clear();
    mode_ = Mode::eager;
    return;
  }
  if (mode_ == Mode::capture) {
    if (capturing_) end_segment();
    if (mode_ == Mode::capture) {
      valid_ = captured_epoch_ == epoch_;
      failed_captures_ = 0;
      ++stats_.captured;
      if (stats_.captured == 1)
        notes_.push_back(name_ + " is captured as " + std::to_string(segments_.size()) + " graph(s) of " +
                         std::to_string(recorded_.size()) + " operations");
    } else {
      ++stats_.uncaptured;
    }
  } else if (mode_ == Mode::replay) {
    if (segment_ops_ > 0) end_segment();
    if (mode_ == Mode::replay) ++stats_.replayed;
    else ++stats_.uncaptured;
  } else {
    ++stats_.uncaptured;
  }
  mode_ = Mode::eager;
}

void StepGraph::begin_segment() {
  // ThreadLocal: another thread's allocations (a data loader's) do not invalidate this capture;
  // this thread's own do, and fall back.
  OURO_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
  segments_.emplace_back();
  segment_ = static_cast<int>(segments_.size()) - 1;
  segment_ops_ = 0;
}

bool StepGraph::next_matches(const Sig& sig) {
  return next_ < recorded_.size() && recorded_[next_].segment == segment_ && recorded_[next_].sig == sig;
}

void StepGraph::run_pending() {
  auto ops = std::move(pending_);
  pending_.clear();
  for (auto& f : ops) f();
}

// The open segment's ops run uncaptured, and so does the rest of the step.
void StepGraph::fall_back(const std::string& why) {
  if (capturing_) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream_, &g);
    if (g) cudaGraphDestroy(g);
    capturing_ = false;
    (void)cudaGetLastError();
    ++failed_captures_;
    if (why != last_reason_)
      notes_.push_back("the step could not be captured (" + why + "); it runs uncaptured" +
                       (failed_captures_ >= kMaxFailedCaptures ? " from now on" : ", and the next step tries again"));
  } else if (why != last_reason_) {
    notes_.push_back(why + ": this step runs uncaptured, the next one is captured again");
  }
  last_reason_ = why;
  drop_graphs();
  mode_ = Mode::eager;
  run_pending();
}

void StepGraph::op(Sig sig, std::function<void()> device) {
  if (mode_ == Mode::eager) return device();
  if (mode_ == Mode::replay) {
    if (!next_matches(sig)) {
      fall_back("the step's operations differ from the captured ones (another shape or loss scale)");
      return device();
    }
    ++next_;
    ++segment_ops_;
    pending_.push_back(std::move(device));
    return;
  }
  if (!capturing_) begin_segment();
  recorded_.push_back({std::move(sig), segment_, -1});
  ++segment_ops_;
  pending_.push_back(device);
  try {
    device();
  } catch (const std::exception& e) {
    fall_back(e.what());  // runs this op again, uncaptured, with the others of the segment
  }
}

int StepGraph::new_slot(size_t bytes) {
  const int i = slots_used_++;
  if (i == static_cast<int>(slots_.size())) slots_.emplace_back();
  Slot& s = slots_[i];
  if (s.bytes < bytes) {
    // An allocation during the capture: allowed for this thread only while it lasts.
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    OURO_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    if (s.pinned) cudaFreeHost(s.pinned);
    s.pinned = nullptr;
    const cudaError_t err = cudaMallocHost(&s.pinned, bytes);
    OURO_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    OURO_CUDA_CHECK(err);
    s.bytes = bytes;
  }
  return i;
}

// Before the host rewrites a slot of segment s, the previous launch of s must have read it.
void StepGraph::wait_segment(int s) {
  Segment& seg = segments_[s];
  if (seg.in_flight && seg.done) OURO_CUDA_CHECK(cudaEventSynchronize(seg.done));
  seg.in_flight = false;
}

void StepGraph::input(void* dst, const void* host, size_t bytes) {
  if (bytes == 0) return;
  // Uncaptured: from pageable memory, staged by cudaMemcpyAsync before it returns.
  auto eager = [this, dst, data = std::vector<char>(static_cast<const char*>(host), static_cast<const char*>(host) + bytes)] {
    OURO_CUDA_CHECK(cudaMemcpyAsync(dst, data.data(), data.size(), cudaMemcpyHostToDevice, stream_));
  };
  if (mode_ == Mode::eager) {
    OURO_CUDA_CHECK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_));
    return;
  }
  Sig sig = this->sig("input", dst, bytes);
  if (mode_ == Mode::replay) {
    if (!next_matches(sig)) {
      fall_back("the step's inputs differ from the captured ones (another shape)");
      return eager();
    }
    const Recorded& r = recorded_[next_++];
    ++segment_ops_;
    wait_segment(r.segment);
    std::memcpy(slots_[r.slot].pinned, host, bytes);
    pending_.push_back(std::move(eager));
    return;
  }
  if (!capturing_) begin_segment();
  int slot = -1;
  try {
    slot = new_slot(bytes);
  } catch (const std::exception& e) {
    pending_.push_back(std::move(eager));
    return fall_back(e.what());
  }
  std::memcpy(slots_[slot].pinned, host, bytes);
  recorded_.push_back({std::move(sig), segment_, slot});
  ++segment_ops_;
  pending_.push_back(std::move(eager));
  const cudaError_t err = cudaMemcpyAsync(dst, slots_[slot].pinned, bytes, cudaMemcpyHostToDevice, stream_);
  if (err != cudaSuccess) fall_back(std::string("cudaMemcpyAsync: ") + cudaGetErrorName(err));
}

void StepGraph::output(void* dst, const void* src, size_t bytes) {
  auto eager = [&] {
    OURO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    OURO_CUDA_CHECK(cudaStreamSynchronize(stream_));
  };
  if (mode_ == Mode::eager) return eager();
  Sig sig = this->sig("output", src, bytes);
  int slot = -1;
  if (mode_ == Mode::replay) {
    if (!next_matches(sig)) {
      fall_back("the step's readback differs from the captured one");
      return eager();
    }
    slot = recorded_[next_++].slot;
    ++segment_ops_;
    pending_.push_back([] {});  // the copy is the graph's; uncaptured it is done below
  } else {
    if (!capturing_) begin_segment();
    try {
      slot = new_slot(bytes);
    } catch (const std::exception& e) {
      fall_back(e.what());
      return eager();
    }
    recorded_.push_back({std::move(sig), segment_, slot});
    ++segment_ops_;
    pending_.push_back([] {});
    const cudaError_t err = cudaMemcpyAsync(slots_[slot].pinned, src, bytes, cudaMemcpyDeviceToHost, stream_);
    if (err != cudaSuccess) {
      fall_back(std::string("cudaMemcpyAsync: ") + cudaGetErrorName(err));
      return eager();
    }
  }
  end_segment();
  if (mode_ == Mode::eager) return eager();  // the segment fell back: its copy did not run
  OURO_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (Segment& s : segments_) s.in_flight = false;
  std::memcpy(dst, slots_[slot].pinned, bytes);
}

void StepGraph::end_segment() {
  if (mode_ == Mode::capture) {
    cudaGraph_t g = nullptr;
    const cudaError_t err = cudaStreamEndCapture(stream_, &g);
    capturing_ = false;
    Segment& seg = segments_[segment_];
    if (err != cudaSuccess || !g) {
      (void)cudaGetLastError();
      ++failed_captures_;
      capturing_ = false;
      fall_back(std::string("cudaStreamEndCapture: ") + cudaGetErrorName(err));
      return;
    }
    seg.ops = segment_ops_;
    const cudaError_t ierr = cudaGraphInstantiate(&seg.exec, g, 0);
    cudaGraphDestroy(g);
    if (ierr != cudaSuccess) {
      (void)cudaGetLastError();
      fall_back(std::string("cudaGraphInstantiate: ") + cudaGetErrorName(ierr));
      return;
    }
    OURO_CUDA_CHECK(cudaEventCreateWithFlags(&seg.done, cudaEventDisableTiming));
  } else {
    // Every op of the segment must have been asked for: a graph runs all of them.
    if (static_cast<size_t>(segment_) >= segments_.size() || segments_[segment_].ops != segment_ops_) {
      fall_back("the step asked for part of a captured segment only");
      return;
    }
  }
  Segment& seg = segments_[segment_];
  OURO_CUDA_CHECK(cudaGraphLaunch(seg.exec, stream_));
  OURO_CUDA_CHECK(cudaEventRecord(seg.done, stream_));
  seg.in_flight = true;
  pending_.clear();
  ++segment_;
  segment_ops_ = 0;
}

void StepGraph::leave(const char* why) {
  if (mode_ == Mode::eager) return;
  fall_back(why);
}

}  // namespace ouro
