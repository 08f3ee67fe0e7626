// The quantized batch norm (MXNet's _contrib_quantized_batch_norm) on the CPU: int8 or uint8
// data in, int8 out. The math (shared/spec/batch_norm_semantics.md, "Quantized path"; the
// oracle is oracle/quantized.py), per channel c, always with the running statistics:
//
//   A = max(|min_data|, |max_data|),  B = max(|min_calib_range|, |max_calib_range|)
//   r_c = 1 / sqrt(running_var_c + eps)
//   w_c = gamma_c r_c A / B        (times 127/255 for uint8 data)
//   b_c = (beta_c - running_mean_c gamma_c r_c) 127 / B
//   out = clamp(rint(w_c q + b_c), -128, 127)            rint: round half to even
//
// Layout: x and out are C-contiguous and viewed as [outer, C, inner] around the channel axis
// (as the float kernels do): channel-first rows of `inner` elements with one (w, b), or, when
// inner == 1, channel-last rows of C elements against the vectors w[C], b[C].
//
// Precision: w_c and b_c are folded in double and rounded once to float; the element work is
// float32: v = fl(fl(q w) + b) (no fma: the build has -ffp-contract=off), then clamp to
// [-128, 127] and round to the nearest integer, ties to even, by adding and subtracting
// 1.5 * 2^23 (exact for |v| <= 2^22 in round-to-nearest). The result is within 3 u_f32
// (|w q| + |b|) of the exact value, inside the suite's integer rule (strict: 8 u_f32 cond),
// and exact wherever every step of the formula is exact in float32 (ties included).
//
// Vectorization: the two loops are plain float loops compiled three times, with the
// avx512f+bw, avx2 and baseline (SSE2) targets (GCC/Clang target attributes), and chosen by
// the instruction set the float kernels use (backends.cpu.set_isa). The file is compiled with
// -fno-trapping-math (CMakeLists.txt), without which GCC keeps the clamp as branches and
// vectorizes nothing below AVX-512; every variant gives the same bits (same operations).
#pragma once

#include "ops.h"

namespace bn {

struct QuantizedArgs {
  ArrayRef x;                                   // int8 or uint8, C-contiguous
  ArrayRef gamma, beta, running_mean, running_var;  // float32 [C]
  ArrayRef out;                                 // int8, x's shape, C-contiguous
  int axis = 1;                                 // normalised, 0 <= axis < ndim
  double eps = 1e-3;
  double data_scale = 1.0;                      // A
  double output_scale = 1.0;                    // B > 0
};

void op_quantized(const QuantizedArgs& a);

}  // namespace bn
