// Rank discovery from the launcher's environment and the block sharding rule.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "ouro/comm.h"
#include "ouro/error.h"

namespace ouro {
namespace {

// The integer value of an environment variable, or -1 when unset. Garbage is an error.
int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return -1;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  OURO_CHECK(end && *end == '\0' && x >= 0, "environment variable {}='{}' is not a rank number", name, v);
  return static_cast<int>(x);
}

// Slurm's SLURM_TASKS_PER_NODE ("2(x3),1": 2 tasks on each of 3 nodes, then 1) at node `node`;
// -1 when absent or unreadable.
int slurm_tasks_on_node(int node) {
  const char* v = std::getenv("SLURM_TASKS_PER_NODE");
  if (!v || node < 0) return -1;
  const std::string s = v;
  size_t i = 0;
  int at = 0;
  while (i < s.size()) {
    char* end = nullptr;
    const long tasks = std::strtol(s.c_str() + i, &end, 10);
    if (end == s.c_str() + i) return -1;
    i = static_cast<size_t>(end - s.c_str());
    long repeat = 1;
    if (s.compare(i, 2, "(x") == 0) {
      repeat = std::strtol(s.c_str() + i + 2, &end, 10);
      i = static_cast<size_t>(end - s.c_str());
      if (i >= s.size() || s[i] != ')') return -1;
      ++i;
    }
    if (node < at + repeat) return static_cast<int>(tasks);
    at += static_cast<int>(repeat);
    if (i < s.size() && s[i] == ',') ++i;
  }
  return -1;
}

bool from(DistEnv& e, const char* launcher, const char* rank, const char* world, const char* local) {
  int r = env_int(rank), w = env_int(world);
  if (r < 0 || w < 0) return false;
  OURO_CHECK(w > 0 && r < w, "{}={} is not below {}={}", rank, r, world, w);
  e.rank = r, e.world = w;
  int l = local ? env_int(local) : -1;
  e.local_rank = l >= 0 ? l : r;
  e.launcher = launcher;
  const std::string who = launcher;
  int lw = who == "openmpi" ? env_int("OMPI_COMM_WORLD_LOCAL_SIZE")
         : who == "mpich"   ? env_int("MPI_LOCALNRANKS")
         : who == "slurm"   ? slurm_tasks_on_node(env_int("SLURM_NODEID"))
                            : env_int("LOCAL_WORLD_SIZE");
  e.local_world = std::max(lw, e.local_rank + 1);
  return true;
}

}  // namespace

DistEnv detect_dist_env() {
  DistEnv e;
  if (from(e, "openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK") ||
      from(e, "mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID") ||
      from(e, "slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID") ||
      from(e, "env", "RANK", "WORLD_SIZE", "LOCAL_RANK"))
    return e;
  return e;
}

ShardRange shard_of(size_t n, int world, int r) {
  const size_t w = static_cast<size_t>(world), base = n / w, extra = n % w, rr = static_cast<size_t>(r);
  const size_t begin = rr * base + std::min(rr, extra);
  return {begin, begin + base + (rr < extra ? 1 : 0)};
}

}  // namespace ouro
