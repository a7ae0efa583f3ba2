// CUDA Graphs for SIMT builds: stream capture and the replay of what it captured.
//
// What is emulated, as the CUDA Programming Guide ("CUDA Graphs", "Stream Capture") and the
// runtime API's documentation define it:
//  - cudaStreamBeginCapture on a stream that is not the legacy default stream and not already
//    capturing; the operations then issued on it (kernel launches with their arguments copied
//    at the call, cudaMemcpyAsync, cudaMemsetAsync, NCCL-over-MPI collectives) become nodes of a
//    graph and run nothing. Each node depends on the stream's previous one.
//  - Fork and join: cudaEventRecord on a capturing stream makes the event stand for the
//    capture's work so far on that stream; cudaStreamWaitEvent of such an event by another
//    stream makes that stream join the capture (its next node depends on the event's), and by
//    a capturing stream adds the dependency. cudaStreamEndCapture on the origin stream returns
//    the graph and takes every joined stream out of capture; a joined stream whose last work the
//    origin never waited for fails it with cudaErrorStreamCaptureUnjoined.
//  - Illegal calls invalidate the capture (later operations on its streams return
//    cudaErrorStreamCaptureInvalidated; cudaStreamEndCapture returns that error and no graph):
//    synchronising or querying a capturing stream (cudaErrorStreamCaptureUnsupported),
//    cudaDeviceSynchronize during any capture (the same), work on the legacy default stream
//    while a blocking stream captures (cudaErrorStreamCaptureImplicit), waiting on an event
//    recorded outside the capture (cudaErrorStreamCaptureIsolation; cudaEventWaitExternal is not
//    emulated), merging two captures (cudaErrorStreamCaptureMerge), synchronising or querying an
//    event recorded in a capture (cudaErrorCapturedEvent), and the potentially unsafe calls
//    (cudaMalloc, cudaFree, cudaMallocHost, cudaFreeHost) that the calling thread's capture
//    interaction mode prohibits (cudaStreamCaptureModeGlobal / ThreadLocal / Relaxed, with
//    cudaThreadExchangeStreamCaptureMode). Ending capture on a stream that is not capturing:
//    cudaErrorIllegalState; on a joined stream that did not begin it:
//    cudaErrorStreamCaptureUnmatched; from another thread without the relaxed mode:
//    cudaErrorStreamCaptureWrongThread.
//  - Host nodes: cudaLaunchHostFunc on a capturing stream records the function and its argument,
//    called at each launch in the node's place (outside capture it runs in stream order).
//  - Stricter than CUDA, on purpose: a captured copy to or from pageable host memory is refused
//    (cudaErrorStreamCaptureUnsupported). Outside a graph such a copy stages the caller's buffer
//    at the call; a replay would read or write whatever that address holds later. A graph's
//    host buffers must be pinned (cudaMallocHost). cudaMallocAsync/cudaFreeAsync (memory nodes)
//    are refused the same way.
//  - cudaGraphInstantiate copies the graph (the executable graph does not depend on it);
//    cudaGraphLaunch runs the nodes in an order that respects their dependencies, chosen by
//    OURO_SIMT_ORDER among the nodes ready at once (forward: capture order, reverse: latest
//    ready first, shuffle: seeded random), so a graph missing a dependency shows it. Under
//    OURO_SIMT_ASYNC the nodes are queued on the launch stream in that order, each with its
//    accesses, behind the previous launch of the same executable graph; otherwise they run
//    before cudaGraphLaunch returns. A graph launched on a capturing stream becomes one node.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ouro/simt/launch.h"
#include "ouro/simt/device_model.h"
#include "simt/async_engine.h"
#include "simt/capture.h"
#include "simt/runtime_state.h"

namespace ouro::simt::detail {
namespace {

struct Node {
  NodeSpec spec;
  std::vector<std::size_t> deps;  // indices of earlier nodes
};

struct Capture {
  std::uint64_t id = 0;
  cudaStream_t origin = nullptr;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;
  bool invalid = false;
  std::vector<Node> nodes;
};

struct StreamCapture {
  std::shared_ptr<Capture> capture;
  std::vector<std::size_t> tip;  // what the stream's next node depends on
};
struct EventCapture {
  std::shared_ptr<Capture> capture;
  std::vector<std::size_t> nodes;  // the capture's work the event stands for
};

struct State {
  std::recursive_mutex mu;
  std::unordered_map<cudaStream_t, StreamCapture> streams;
  std::unordered_map<cudaEvent_t, EventCapture> events;
  std::uint64_t next_id = 1;
};
State& state() {
  static State* s = new State;  // outlives static destructors that destroy streams
  return *s;
}

constinit thread_local cudaStreamCaptureMode tl_mode = cudaStreamCaptureModeGlobal;

cudaError_t fail(cudaError_t err) {
  set_last_error(err);
  return err;
}

bool blocking(cudaStream_t s) { return s && (s->flags & cudaStreamNonBlocking) == 0; }

// Every stream of `c` leaves capture (the caller holds the lock).
void end_capture(State& st, const std::shared_ptr<Capture>& c) {
  std::erase_if(st.streams, [&](const auto& kv) { return kv.second.capture == c; });
}

void add_unique(std::vector<std::size_t>& into, const std::vector<std::size_t>& more) {
  for (std::size_t n : more)
    if (std::find(into.begin(), into.end(), n) == into.end()) into.push_back(n);
}

// Nodes from which `tip` is reachable, `tip` included.
std::vector<bool> ancestors(const Capture& c, const std::vector<std::size_t>& tip) {
  std::vector<bool> seen(c.nodes.size(), false);
  std::vector<std::size_t> stack(tip.begin(), tip.end());
  while (!stack.empty()) {
    const std::size_t n = stack.back();
    stack.pop_back();
    if (seen[n]) continue;
    seen[n] = true;
    for (std::size_t d : c.nodes[n].deps) stack.push_back(d);
  }
  return seen;
}

}  // namespace

bool is_legacy(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy; }

bool capturing(cudaStream_t s) {
  if (is_legacy(s)) return false;
  auto& st = state();
  std::lock_guard lock(st.mu);
  return st.streams.count(s) != 0;
}

cudaError_t capture_node(cudaStream_t s, NodeSpec spec) {
  auto& st = state();
  std::lock_guard lock(st.mu);
  auto it = st.streams.find(s);
  if (it == st.streams.end()) return fail(cudaErrorIllegalState);
  Capture& c = *it->second.capture;
  if (c.invalid) return fail(cudaErrorStreamCaptureInvalidated);
  c.nodes.push_back(Node{std::move(spec), it->second.tip});
  it->second.tip = {c.nodes.size() - 1};
  return cudaSuccess;
}

cudaError_t capture_invalidate(cudaStream_t s, cudaError_t err) {
  auto& st = state();
  std::lock_guard lock(st.mu);
  auto it = st.streams.find(s);
  if (it != st.streams.end()) it->second.capture->invalid = true;
  return fail(err);
}

cudaError_t capture_legacy_use() {
  auto& st = state();
  std::lock_guard lock(st.mu);
  bool hit = false;
  for (auto& [s, sc] : st.streams)
    if (blocking(s) && !sc.capture->invalid) sc.capture->invalid = hit = true;
  return hit ? fail(cudaErrorStreamCaptureImplicit) : cudaSuccess;
}

cudaError_t capture_stream_sync(cudaStream_t s) {
  if (!capturing(s)) return cudaSuccess;
  return capture_invalidate(s, cudaErrorStreamCaptureUnsupported);
}

cudaError_t capture_device_sync() {
  auto& st = state();
  std::lock_guard lock(st.mu);
  if (st.streams.empty()) return cudaSuccess;
  for (auto& [s, sc] : st.streams) sc.capture->invalid = true;
  return fail(cudaErrorStreamCaptureUnsupported);
}

cudaError_t capture_unsafe_call() {
  if (tl_mode == cudaStreamCaptureModeRelaxed) return cudaSuccess;
  auto& st = state();
  std::lock_guard lock(st.mu);
  const auto me = std::this_thread::get_id();
  bool hit = false;
  for (auto& [s, sc] : st.streams) {
    Capture& c = *sc.capture;
    const bool mine = c.thread == me && c.mode != cudaStreamCaptureModeRelaxed;
    const bool others = tl_mode == cudaStreamCaptureModeGlobal && c.thread != me && c.mode == cudaStreamCaptureModeGlobal;
    if (mine || others) c.invalid = hit = true;
  }
  return hit ? fail(cudaErrorStreamCaptureUnsupported) : cudaSuccess;
}

bool capture_event_record(cudaEvent_t e, cudaStream_t s, cudaError_t* err) {
  auto& st = state();
  std::lock_guard lock(st.mu);
  auto it = is_legacy(s) ? st.streams.end() : st.streams.find(s);
  if (it == st.streams.end()) {
    st.events.erase(e);  // recorded outside any capture from now on
    return false;
  }
  if (it->second.capture->invalid) {
    *err = fail(cudaErrorStreamCaptureInvalidated);
    return true;
  }
  st.events[e] = EventCapture{it->second.capture, it->second.tip};
  *err = cudaSuccess;
  return true;
}

bool capture_stream_wait(cudaStream_t s, cudaEvent_t e, cudaError_t* err) {
  auto& st = state();
  std::lock_guard lock(st.mu);
  auto sit = is_legacy(s) ? st.streams.end() : st.streams.find(s);
  auto eit = st.events.find(e);
  const bool ev_captured = eit != st.events.end();
  if (sit == st.streams.end() && !ev_captured) return false;  // nothing to do with a capture
  *err = cudaSuccess;
  if (sit == st.streams.end()) {
    // A fork: s joins the event's capture, its next node after the event's work.
    EventCapture& ec = eit->second;
    if (is_legacy(s)) {
      ec.capture->invalid = true;
      *err = fail(cudaErrorStreamCaptureImplicit);
    } else if (std::none_of(st.streams.begin(), st.streams.end(),
                            [&](const auto& kv) { return kv.second.capture == ec.capture; })) {
      *err = fail(cudaErrorCapturedEvent);  // its capture has ended
    } else if (ec.capture->invalid) {
      *err = fail(cudaErrorStreamCaptureInvalidated);
    } else {
      st.streams[s] = StreamCapture{ec.capture, ec.nodes};
    }
    return true;
  }
  StreamCapture& sc = sit->second;
  if (sc.capture->invalid) {
    *err = fail(cudaErrorStreamCaptureInvalidated);
  } else if (!ev_captured) {
    sc.capture->invalid = true;  // a dependency on work outside the capture
    *err = fail(cudaErrorStreamCaptureIsolation);
  } else if (eit->second.capture != sc.capture) {
    sc.capture->invalid = true;
    eit->second.capture->invalid = true;
    *err = fail(cudaErrorStreamCaptureMerge);
  } else {
    add_unique(sc.tip, eit->second.nodes);
  }
  return true;
}

cudaError_t capture_event_use(cudaEvent_t e) {
  auto& st = state();
  std::lock_guard lock(st.mu);
  auto it = st.events.find(e);
  if (it == st.events.end()) return cudaSuccess;
  it->second.capture->invalid = true;  // harmless when the capture has ended
  return fail(cudaErrorCapturedEvent);
}

void capture_forget_event(cudaEvent_t e) {
  auto& st = state();
  std::lock_guard lock(st.mu);
  st.events.erase(e);
}

void capture_forget_stream(cudaStream_t s) {
  auto& st = state();
  std::lock_guard lock(st.mu);
  auto it = st.streams.find(s);
  if (it == st.streams.end()) return;
  it->second.capture->invalid = true;  // CUDA: destroying a capturing stream invalidates it
  st.streams.erase(it);
}

}  // namespace ouro::simt::detail

// Graph handles of the emulated runtime.
struct CUgraph_st {
  std::vector<ouro::simt::detail::Node> nodes;
};
struct CUgraphExec_st {
  std::vector<ouro::simt::detail::Node> nodes;
  std::uint64_t last_op = 0;           // the previous launch's last queued node (asynchronous mode)
  std::vector<std::uint64_t> last_vc;  // its clock
};

namespace ouro::simt::detail {
namespace {

// An order of g's nodes that respects their dependencies, picked by the run order.
std::vector<std::size_t> launch_order(const std::vector<Node>& nodes) {
  const RunOrder order = run_order();
  std::vector<std::size_t> out;
  out.reserve(nodes.size());
  if (order.order == Order::forward) {
    for (std::size_t i = 0; i < nodes.size(); ++i) out.push_back(i);  // dependencies point back
    return out;
  }
  static std::mt19937_64 rng(order.seed);
  std::vector<std::size_t> missing(nodes.size());
  std::vector<std::vector<std::size_t>> users(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    std::vector<std::size_t> d = nodes[i].deps;
    std::sort(d.begin(), d.end());
    d.erase(std::unique(d.begin(), d.end()), d.end());
    missing[i] = d.size();
    for (std::size_t p : d) users[p].push_back(i);
  }
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (missing[i] == 0) ready.push_back(i);
  while (!ready.empty()) {
    std::size_t k = ready.size() - 1;  // reverse: the latest ready node
    if (order.order == Order::shuffle) k = std::uniform_int_distribution<std::size_t>(0, ready.size() - 1)(rng);
    std::sort(ready.begin(), ready.end());
    const std::size_t n = ready[k];
    ready.erase(ready.begin() + static_cast<std::ptrdiff_t>(k));
    out.push_back(n);
    for (std::size_t u : users[n])
      if (--missing[u] == 0) ready.push_back(u);
  }
  return out;
}

void run_now(const std::vector<Node>& nodes) {
  for (std::size_t i : launch_order(nodes))
    if (nodes[i].spec.run) nodes[i].spec.run();
}

cudaError_t launch_graph(CUgraphExec_st& g, cudaStream_t stream) {
  if (capturing(stream)) {
    // A child graph: one node that runs the whole executable graph.
    auto nodes = std::make_shared<std::vector<Node>>(g.nodes);
    NodeSpec spec;
    spec.what = "cudaGraphLaunch";
    spec.run = [nodes] { run_now(*nodes); };
    for (const Node& n : g.nodes) spec.accesses.insert(spec.accesses.end(), n.spec.accesses.begin(), n.spec.accesses.end());
    return capture_node(stream, std::move(spec));
  }
  if (is_legacy(stream))
    if (cudaError_t e = capture_legacy_use(); e != cudaSuccess) return e;
  note_work(stream);
  if (!async_mode()) {
    run_now(g.nodes);
    return cudaSuccess;
  }
  bool first = true;
  for (std::size_t i : launch_order(g.nodes)) {
    const NodeSpec& n = g.nodes[i].spec;
    OpSpec spec;
    spec.stream = stream_id(stream);
    spec.what = n.what;
    spec.kernel = n.kernel;
    spec.where = n.where;
    spec.accesses = n.accesses;
    spec.run = n.run;
    spec.nccl = n.nccl;
    if (first && g.last_op) {  // behind the previous launch of this executable graph
      spec.wait_op = g.last_op;
      spec.wait_vc = &g.last_vc;
    }
    first = false;
    std::vector<std::uint64_t> vc;
    g.last_op = enqueue(std::move(spec), &vc);
    g.last_vc = std::move(vc);
    if (n.poison) std::memset(n.poison, 0xFF, n.poison_bytes);
  }
  return cudaSuccess;
}

}  // namespace
}  // namespace ouro::simt::detail

using ouro::simt::detail::fail;
using ouro::simt::detail::state;

extern "C" {

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
      mode != cudaStreamCaptureModeRelaxed)
    return fail(cudaErrorInvalidValue);
  if (ouro::simt::detail::is_legacy(stream) || stream == cudaStreamPerThread)
    return fail(cudaErrorStreamCaptureUnsupported);
  auto& st = state();
  std::lock_guard lock(st.mu);
  if (st.streams.count(stream)) return fail(cudaErrorIllegalState);
  auto c = std::make_shared<ouro::simt::detail::Capture>();
  c->id = st.next_id++;
  c->origin = stream;
  c->mode = mode;
  c->thread = std::this_thread::get_id();
  st.streams[stream] = ouro::simt::detail::StreamCapture{c, {}};
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (!graph) return fail(cudaErrorInvalidValue);
  auto& st = state();
  std::lock_guard lock(st.mu);
  auto it = ouro::simt::detail::is_legacy(stream) ? st.streams.end() : st.streams.find(stream);
  if (it == st.streams.end()) return fail(cudaErrorIllegalState);
  const std::shared_ptr<ouro::simt::detail::Capture> c = it->second.capture;
  if (c->origin != stream) return fail(cudaErrorStreamCaptureUnmatched);
  if (c->mode != cudaStreamCaptureModeRelaxed && c->thread != std::this_thread::get_id())
    return fail(cudaErrorStreamCaptureWrongThread);
  *graph = nullptr;
  if (c->invalid) {
    ouro::simt::detail::end_capture(st, c);
    return fail(cudaErrorStreamCaptureInvalidated);
  }
  // Every joined stream's work must be waited for by the origin.
  const std::vector<bool> joined = ouro::simt::detail::ancestors(*c, it->second.tip);
  bool unjoined = false;
  for (const auto& [s, sc] : st.streams)
    if (sc.capture == c && s != stream)
      for (std::size_t n : sc.tip) unjoined = unjoined || !joined[n];
  ouro::simt::detail::end_capture(st, c);
  if (unjoined) return fail(cudaErrorStreamCaptureUnjoined);
  *graph = new CUgraph_st{std::move(c->nodes)};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus* status) {
  if (!status) return fail(cudaErrorInvalidValue);
  auto& st = state();
  std::lock_guard lock(st.mu);
  if (ouro::simt::detail::is_legacy(stream)) {
    for (const auto& [s, sc] : st.streams)
      if (ouro::simt::detail::blocking(s)) return fail(cudaErrorStreamCaptureImplicit);
    *status = cudaStreamCaptureStatusNone;
    return cudaSuccess;
  }
  auto it = st.streams.find(stream);
  *status = it == st.streams.end()           ? cudaStreamCaptureStatusNone
            : it->second.capture->invalid ? cudaStreamCaptureStatusInvalidated
                                          : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

// The status and the capture's id; the in-progress graph and its dependencies are not exposed.
cudaError_t cudaStreamGetCaptureInfo(cudaStream_t stream, enum cudaStreamCaptureStatus* status,
                                     unsigned long long* id, cudaGraph_t* graph,
                                     const cudaGraphNode_t** deps, const cudaGraphEdgeData** edges,
                                     size_t* num_deps) {
  if (!status) return fail(cudaErrorInvalidValue);
  if (graph || deps || edges || num_deps) return fail(cudaErrorNotSupported);
  if (cudaError_t e = cudaStreamIsCapturing(stream, status); e != cudaSuccess) return e;
  if (id && *status != cudaStreamCaptureStatusNone) {
    auto& st = state();
    std::lock_guard lock(st.mu);
    *id = st.streams.at(stream).capture->id;
  }
  return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode* mode) {
  if (!mode) return fail(cudaErrorInvalidValue);
  if (*mode != cudaStreamCaptureModeGlobal && *mode != cudaStreamCaptureModeThreadLocal &&
      *mode != cudaStreamCaptureModeRelaxed)
    return fail(cudaErrorInvalidValue);
  std::swap(*mode, ouro::simt::detail::tl_mode);
  return cudaSuccess;
}

cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* num) {
  if (!graph || !num) return fail(cudaErrorInvalidValue);
  if (nodes) {
    const size_t n = std::min(*num, graph->nodes.size());
    for (size_t i = 0; i < n; ++i) nodes[i] = reinterpret_cast<cudaGraphNode_t>(&graph->nodes[i]);
    for (size_t i = n; i < *num; ++i) nodes[i] = nullptr;
    *num = n;
  } else {
    *num = graph->nodes.size();
  }
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!exec || !graph) return fail(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->nodes, 0, {}};
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  return cudaGraphInstantiate(exec, graph, flags);
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return fail(cudaErrorInvalidValue);
  return ouro::simt::detail::launch_graph(*exec, stream);
}

// A host function on a stream: it runs once the stream's earlier work has (at once in the
// synchronous mode, queued in stream order in the asynchronous one); on a capturing stream it
// becomes a host node of the graph, run at each launch in its place. As in CUDA it must not call
// the CUDA API (not checked).
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (!fn) return fail(cudaErrorInvalidValue);
  if (ouro::simt::detail::capturing(stream)) {
    ouro::simt::detail::NodeSpec spec;
    spec.what = "cudaLaunchHostFunc";
    spec.where = ouro::simt::detail::take_call_site();
    spec.run = [fn, user_data] { fn(user_data); };
    return ouro::simt::detail::capture_node(stream, std::move(spec));
  }
  if (ouro::simt::detail::is_legacy(stream))
    if (cudaError_t e = ouro::simt::detail::capture_legacy_use(); e != cudaSuccess) return e;
  ouro::simt::detail::note_work(stream);
  ouro::simt::enqueue_host_op(stream, "cudaLaunchHostFunc", {}, [fn, user_data] { fn(user_data); });
  return cudaSuccess;
}

// Queued launches keep their own copies of the nodes: destroying the handle is safe at once.
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  if (!exec) return fail(cudaErrorInvalidValue);
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  if (!graph) return fail(cudaErrorInvalidValue);
  delete graph;
  return cudaSuccess;
}

}  // extern "C"
