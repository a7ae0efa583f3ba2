// How many CPU threads the compute libraries use (OpenMP regions and OpenBLAS).
#pragma once

namespace ouro {

// Applies run.threads to OpenMP and OpenBLAS (0 = every core).
void set_compute_threads(int threads);

}  // namespace ouro
