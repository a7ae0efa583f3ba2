// The device side of the Communicator interface that every transport shares: host-only
// communicators refuse device buffers, and the device communicator of the backend linked into
// this binary (src/device/nccl_comm.cu) registers its factory here, as the device Ops do.
#include "ouro/comm.h"
#include "ouro/error.h"

namespace ouro {
namespace {

DeviceCommFactory& device_comm_factory() {
  static DeviceCommFactory factory = nullptr;  // function-local: registration runs during static init
  return factory;
}

[[noreturn]] void no_device(const Communicator& c, const char* op) {
  fail("communicator '{}' has no device collectives ({} of device memory): the device backends "
       "need the nccl communicator",
       c.name(), op);
}

}  // namespace

void Communicator::device_all_reduce(void*, size_t, DType, ReduceOp, void*) { no_device(*this, "all-reduce"); }
void Communicator::device_reduce_scatter(void*, size_t, DType, ReduceOp, void*) {
  no_device(*this, "reduce-scatter");
}
void Communicator::device_all_gather(void*, size_t, DType, void*) { no_device(*this, "all-gather"); }
void Communicator::device_broadcast(void*, size_t, DType, int, void*) { no_device(*this, "broadcast"); }
void Communicator::device_all_reduce_spans_start(void*, const std::vector<BufferSpan>&, DType, ReduceOp, void*) {
  no_device(*this, "bucketed all-reduce");
}
void Communicator::device_wait_started(void*) { no_device(*this, "wait"); }

ShardRange device_shard_of(size_t n, int world, int r) {
  const size_t w = static_cast<size_t>(world), each = n / w, rr = static_cast<size_t>(r);
  return {rr * each, rr + 1 == w ? n : (rr + 1) * each};
}

void register_device_comm(DeviceCommFactory factory) { device_comm_factory() = factory; }

std::unique_ptr<Communicator> make_device_comm(std::unique_ptr<Communicator> host,
                                               const RendezvousOptions& rv, double timeout_s) {
  OURO_CHECK(device_comm_factory(), "this binary has no device backend, so no device communicator "
             "(build with CUDA, or run ouro-simt)");
  return device_comm_factory()(std::move(host), rv, timeout_s);
}

}  // namespace ouro
