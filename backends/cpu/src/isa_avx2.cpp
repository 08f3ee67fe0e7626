// Kernel table for the avx2 instruction set: the shared kernels of kernels.inc compiled
// with this file's compiler flags (CMakeLists.txt), in their own namespace.
#define BN_ISA_AVX2 1
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

namespace bn::isa_avx2 {
constexpr const char* kIsaName = "avx2";
#include "kernels.inc"
}  // namespace bn::isa_avx2

namespace bn {
const KernelTable* table_avx2() { return &isa_avx2::kTable; }
}  // namespace bn
