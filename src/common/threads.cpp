#include "common/threads.h"

#include <omp.h>
#include <cblas.h>

namespace ouro {

void set_compute_threads(int threads) {
  int n = threads > 0 ? threads : omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace ouro
