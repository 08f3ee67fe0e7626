// Kernel table for the avx512 instruction set: the shared kernels of kernels.inc compiled
// with this file's compiler flags (CMakeLists.txt), in their own namespace.
#define BN_ISA_AVX512 1
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <type_traits>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "bn.h"
#include "simd.h"

namespace bn::isa_avx512 {
constexpr const char* kIsaName = "avx512";
#include "kernels.inc"
}  // namespace bn::isa_avx512

namespace bn {
const KernelTable* table_avx512() { return &isa_avx512::kTable; }
}  // namespace bn
