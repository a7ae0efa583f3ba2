// Static __shared__ variables under the emulator are thread_local (include/ouro/cuda.h) and carry
// the ABI tag "ouro_shared" in their mangled names, which is how they are found here: in the
// ELF symbol tables of the loaded modules, as TLS symbols (offset, size) inside each module's
// TLS block. fill_static_shared() writes 0xFF (NaN in fp32, bf16 and fp16) over all of them in
// the calling OS thread's copy, so a block reading shared memory it never wrote sees NaN, as
// with dynamic shared memory. (A variable that no code ever writes is a constant zero to the
// compiler, which folds its reads: that case cannot be seen here, and no real kernel has it.)
#pragma once
#include <cstddef>

namespace ouro::simt::detail {

// Fills every static shared variable of the program (this thread's copy) with 0xFF bytes.
void fill_static_shared();

// Total bytes of static shared variables found (for tests and diagnostics).
std::size_t static_shared_bytes();

}  // namespace ouro::simt::detail
