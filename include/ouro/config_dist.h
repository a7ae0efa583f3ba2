// The [dist] section: one DistConfig, parsed and validated once by the config (Config::validate
// calls DistConfig::validate) and read as it is by the dist layer (src/dist/run_comm.h,
// rendezvous.h), which no longer copies or re-checks it. In the config layer for the reason
// config_model.h gives.
#pragma once
#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "ouro/choice.h"

namespace ouro {

// How the device backends' ranks exchange NCCL's unique id (src/dist/rendezvous.h):
// auto (mpi under mpirun, else env when $OURO_INIT_ADDR/$MASTER_ADDR is set, else mpi),
// mpi, file (init_path on a shared file system), tcp (rank 0 listens on init_addr), env.
// file/tcp/env: no MPI at all on the device backends (the host collectives go over NCCL);
// unused on cpu, whose collectives are MPI's.
enum class DistInit { auto_, mpi, file, tcp, env };
constexpr std::array<std::string_view, 5> choice_names(DistInit) { return {"auto", "mpi", "file", "tcp", "env"}; }

struct DistConfig {
  int zero = 0;           // 1: ZeRO-1 (gradients reduce-scattered, AdamW sharded, weights all-gathered)
  double timeout_s = 300; // a collective taking longer aborts the job (a peer died or hung)
  // Gradients are averaged in buckets of about this many MiB, each launched as soon as the
  // backward has finished its gradients, overlapping the rest of the backward; 0: one exchange
  // after the backward.
  double bucket_mb = 25;
  DistInit init = DistInit::auto_;
  std::string init_path = "";  // dist.init = file
  std::string init_addr = "";  // dist.init = tcp: host:port

  // Throws ouro::Error naming the key ("<where>: key 'dist.init_path' must be set ...").
  void validate(const std::string& where) const;
};

// "host:port" or "[v6addr]:port" (brackets removed from host), port in 1..65535.
struct HostPort {
  std::string host;
  int port = 0;
};
// The address, or nullopt with *why saying what is wrong ("expected host:port", "port 'x' is not
// in 1..65535").
std::optional<HostPort> split_host_port(const std::string& s, std::string* why = nullptr);
// The same, failing with "<what> '<s>': <why>".
HostPort parse_host_port(const std::string& s, const std::string& what);

}  // namespace ouro
