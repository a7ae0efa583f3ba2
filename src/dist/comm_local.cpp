// The single-process communicator: every collective is the identity (Avg over one rank is the
// value itself), so the trainer has one code path whatever the world size.
#include "ouro/comm.h"

namespace ouro {

class LocalComm final : public Communicator {
 public:
  std::string name() const override { return "local"; }
  int rank() const override { return 0; }
  int world() const override { return 1; }
  int local_rank() const override { return 0; }
  void all_reduce(float*, size_t, ReduceOp) override {}
  void all_reduce(double*, size_t, ReduceOp) override {}
  void reduce_scatter(float*, size_t, ReduceOp) override {}
  void all_gather(float*, size_t) override {}
  void all_gather(double*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
};

std::unique_ptr<Communicator> make_local_comm() { return std::make_unique<LocalComm>(); }

}  // namespace ouro
