// Kernel table for the portable instruction set: the shared kernels of kernels.inc compiled
// with this file's compiler flags (CMakeLists.txt), in their own namespace.
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

namespace bn::isa_portable {
constexpr const char* kIsaName = "portable";
#include "kernels.inc"
}  // namespace bn::isa_portable

namespace bn {
const KernelTable* table_portable() { return &isa_portable::kTable; }
}  // namespace bn
