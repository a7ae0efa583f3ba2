// How much faster N threads run than one on this machine right now, measured on a loop with no
// memory traffic and no sharing. It is the ceiling for any thread-scaling figure taken in the
// same run: on idle cores it is ~N, on cores other processes keep busy it is lower, and a
// benchmark's scaling means something only next to it.
#pragma once

namespace ouro {

struct CoreScaling {
  int threads = 1;
  double one_thread_s = 0;   // best of the repeats
  double n_threads_s = 0;    // best of the repeats, same total work
  double scaling() const { return n_threads_s > 0 ? one_thread_s / n_threads_s : 0; }
};

// ~0.3 s of one core's work, timed on 1 and on `threads` threads (best of `repeats`).
CoreScaling measure_core_scaling(int threads, int repeats = 3);

}  // namespace ouro
