// Vector traits for one instruction set, chosen by the macro the including file defines:
// BN_ISA_AVX512, BN_ISA_AVX2, or neither (portable scalar code).
//
// SimdD: float64 lanes, loading float64 or float32 storage (converted up) and storing back with
//        round-to-nearest-even.  SimdF: float32 lanes for float16 / bfloat16 storage.
// load_n / store_n touch only the first n < W elements (masked loads fill the rest with 0);
// stream() is a non-temporal store and needs an address aligned to W * sizeof(storage).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(BN_ISA_AVX512) || defined(BN_ISA_AVX2)
#include <immintrin.h>
#endif

#include "bn.h"

namespace bn {

struct half_t { std::uint16_t bits; };  // IEEE binary16 storage
struct bf16_t { std::uint16_t bits; };  // bfloat16 storage

}  // namespace bn

#if defined(BN_ISA_AVX512)
namespace bn::isa_avx512 {

struct SimdD {
  using A = double;
  using V = __m512d;
  static constexpr int W = 8;
  static __mmask8 mk(int n) { return static_cast<__mmask8>((1u << n) - 1u); }
  static V zero() { return _mm512_setzero_pd(); }
  static V set1(double a) { return _mm512_set1_pd(a); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }    // a*b + c
  static V fnma(V a, V b, V c) { return _mm512_fnmadd_pd(a, b, c); }  // c - a*b
  static V keep(V v, int n) { return _mm512_maskz_mov_pd(mk(n), v); }
  static V amax(V a, V x) { return _mm512_max_pd(a, _mm512_abs_pd(x)); }  // max(a, |x|)
  static void to_array(V v, double* o) { _mm512_storeu_pd(o, v); }
  static void fence() { _mm_sfence(); }

  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static V load_n(const double* p, int n) { return _mm512_maskz_loadu_pd(mk(n), p); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  static void store_n(double* p, V v, int n) { _mm512_mask_storeu_pd(p, mk(n), v); }
  static void stream(double* p, V v) { _mm512_stream_pd(p, v); }

  static V load(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
  static V load_n(const float* p, int n) {
    return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mk(n), p));
  }
  static void store(float* p, V v) { _mm256_storeu_ps(p, _mm512_cvtpd_ps(v)); }
  static void store_n(float* p, V v, int n) { _mm256_mask_storeu_ps(p, mk(n), _mm512_cvtpd_ps(v)); }
  static void stream(float* p, V v) { _mm256_stream_ps(p, _mm512_cvtpd_ps(v)); }

  // 16-bit storage widened to float64 (statistics of float16 / bfloat16 data)
  static V load(const half_t* p) {
    return _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static V load_n(const half_t* p, int n) {
    return _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_maskz_loadu_epi16(mk(n), p)));
  }
  static V widen_bf16(__m128i h) {
    return _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
  }
  static V load(const bf16_t* p) { return widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static V load_n(const bf16_t* p, int n) { return widen_bf16(_mm_maskz_loadu_epi16(mk(n), p)); }
};

struct SimdF {
  using A = float;
  using V = __m512;
  static constexpr int W = 16;
  static __mmask16 mk(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float a) { return _mm512_set1_ps(a); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static V keep(V v, int n) { return _mm512_maskz_mov_ps(mk(n), v); }
  static void to_array(V v, float* o) { _mm512_storeu_ps(o, v); }
  static void fence() { _mm_sfence(); }

  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(mk(n), p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, V v, int n) { _mm512_mask_storeu_ps(p, mk(n), v); }
  static void stream(float* p, V v) { _mm512_stream_ps(p, v); }

  static V load(const half_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static V load_n(const half_t* p, int n) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk(n), p)); }
  static __m256i to_half(V v) { return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static void store(half_t* p, V v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_half(v)); }
  static void store_n(half_t* p, V v, int n) { _mm256_mask_storeu_epi16(p, mk(n), to_half(v)); }
  static void stream(half_t* p, V v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_half(v)); }

  static V widen_bf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static V load(const bf16_t* p) {
    return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static V load_n(const bf16_t* p, int n) { return widen_bf16(_mm256_maskz_loadu_epi16(mk(n), p)); }
  static __m256i to_bf16(V v) {  // round to nearest even; NaN stays a (quiet) NaN
    const __m512i b = _mm512_castps_si512(v);
    const __m512i hi = _mm512_srli_epi32(b, 16);
    const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
  }
  static void store(bf16_t* p, V v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_bf16(v)); }
  static void store_n(bf16_t* p, V v, int n) { _mm256_mask_storeu_epi16(p, mk(n), to_bf16(v)); }
  static void stream(bf16_t* p, V v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_bf16(v)); }
};

}  // namespace bn::isa_avx512

#elif defined(BN_ISA_AVX2)
namespace bn::isa_avx2 {

struct SimdD {
  using A = double;
  using V = __m256d;
  static constexpr int W = 4;
  static __m256i mk(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static __m128i mk32(int n) { return _mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(0, 1, 2, 3)); }
  static V zero() { return _mm256_setzero_pd(); }
  static V set1(double a) { return _mm256_set1_pd(a); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V fnma(V a, V b, V c) { return _mm256_fnmadd_pd(a, b, c); }
  static V keep(V v, int n) { return _mm256_and_pd(v, _mm256_castsi256_pd(mk(n))); }
  static V amax(V a, V x) { return _mm256_max_pd(a, _mm256_andnot_pd(_mm256_set1_pd(-0.0), x)); }
  static void to_array(V v, double* o) { _mm256_storeu_pd(o, v); }
  static void fence() { _mm_sfence(); }

  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static V load_n(const double* p, int n) { return _mm256_maskload_pd(p, mk(n)); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static void store_n(double* p, V v, int n) { _mm256_maskstore_pd(p, mk(n), v); }
  static void stream(double* p, V v) { _mm256_stream_pd(p, v); }

  static V load(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
  static V load_n(const float* p, int n) { return _mm256_cvtps_pd(_mm_maskload_ps(p, mk32(n))); }
  static void store(float* p, V v) { _mm_storeu_ps(p, _mm256_cvtpd_ps(v)); }
  static void store_n(float* p, V v, int n) { _mm_maskstore_ps(p, mk32(n), _mm256_cvtpd_ps(v)); }
  static void stream(float* p, V v) { _mm_stream_ps(p, _mm256_cvtpd_ps(v)); }

  // 16-bit storage widened to float64 (statistics of float16 / bfloat16 data)
  static __m128i load4x16(const void* p) {
    std::int64_t w;
    std::memcpy(&w, p, 8);
    return _mm_cvtsi64_si128(w);
  }
  static __m128i load4x16_n(const void* p, int n) {
    std::int64_t w = 0;
    std::memcpy(&w, p, static_cast<std::size_t>(n) * 2);
    return _mm_cvtsi64_si128(w);
  }
  static V load(const half_t* p) { return _mm256_cvtps_pd(_mm_cvtph_ps(load4x16(p))); }
  static V load_n(const half_t* p, int n) { return _mm256_cvtps_pd(_mm_cvtph_ps(load4x16_n(p, n))); }
  static V widen_bf16(__m128i h) {
    return _mm256_cvtps_pd(_mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16)));
  }
  static V load(const bf16_t* p) { return widen_bf16(load4x16(p)); }
  static V load_n(const bf16_t* p, int n) { return widen_bf16(load4x16_n(p, n)); }
};

struct SimdF {
  using A = float;
  using V = __m256;
  static constexpr int W = 8;
  static __m256i mk(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float a) { return _mm256_set1_ps(a); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static V keep(V v, int n) { return _mm256_and_ps(v, _mm256_castsi256_ps(mk(n))); }
  static void to_array(V v, float* o) { _mm256_storeu_ps(o, v); }
  static void fence() { _mm_sfence(); }

  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_n(const float* p, int n) { return _mm256_maskload_ps(p, mk(n)); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, V v, int n) { _mm256_maskstore_ps(p, mk(n), v); }
  static void stream(float* p, V v) { _mm256_stream_ps(p, v); }

  // 16-bit storage: 8 elements = one 128-bit word. A partial word of n < 8 elements: the
  // n / 2 whole pairs by a masked 32-bit load or store (masked-off lanes are never touched),
  // an odd last element on its own. (A memcpy through a buffer was a library call per row
  // tail: 7x7 float16 planes ran slower than float32 ones.)
  static __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
  static __m128i pairs(int n) { return _mm_cmpgt_epi32(_mm_set1_epi32(n / 2), _mm_setr_epi32(0, 1, 2, 3)); }
  static __m128i load16_n(const void* p, int n) {
    __m128i h = _mm_maskload_epi32(static_cast<const int*>(p), pairs(n));
    if (n & 1) {
      std::uint16_t last;
      std::memcpy(&last, static_cast<const std::uint16_t*>(p) + (n - 1), 2);
      const __m128i at = _mm_cmpeq_epi16(_mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7),
                                         _mm_set1_epi16(static_cast<short>(n - 1)));
      h = _mm_blendv_epi8(h, _mm_set1_epi16(static_cast<short>(last)), at);
    }
    return h;
  }
  static void store16_n(void* p, __m128i h, int n) {
    _mm_maskstore_epi32(static_cast<int*>(p), pairs(n), h);
    if (n & 1) {
      alignas(16) std::uint16_t buf[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(buf), h);
      std::memcpy(static_cast<std::uint16_t*>(p) + (n - 1), buf + (n - 1), 2);
    }
  }

  static V load(const half_t* p) { return _mm256_cvtph_ps(load16(p)); }
  static V load_n(const half_t* p, int n) { return _mm256_cvtph_ps(load16_n(p, n)); }
  static __m128i to_half(V v) { return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static void store(half_t* p, V v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_half(v)); }
  static void store_n(half_t* p, V v, int n) { store16_n(p, to_half(v), n); }
  static void stream(half_t* p, V v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_half(v)); }

  static V widen_bf16(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static V load(const bf16_t* p) { return widen_bf16(load16(p)); }
  static V load_n(const bf16_t* p, int n) { return widen_bf16(load16_n(p, n)); }
  static __m128i to_bf16(V v) {
    const __m256i b = _mm256_castps_si256(v);
    const __m256i hi = _mm256_srli_epi32(b, 16);
    const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
    const __m256i q = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m256i out = _mm256_blendv_epi8(r, q, nan);
    return _mm_packus_epi32(_mm256_castsi256_si128(out), _mm256_extracti128_si256(out, 1));
  }
  static void store(bf16_t* p, V v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_bf16(v)); }
  static void store_n(bf16_t* p, V v, int n) { store16_n(p, to_bf16(v), n); }
  static void stream(bf16_t* p, V v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_bf16(v)); }
};

}  // namespace bn::isa_avx2

#else
namespace bn::isa_portable {

// One lane: plain C++ that any compiler vectorises as far as the baseline allows.
template <class AT>
struct SimdScalar {
  using A = AT;
  using V = AT;
  static constexpr int W = 1;
  static V zero() { return 0; }
  static V set1(A a) { return a; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V fma(V a, V b, V c) { return std::fma(a, b, c); }
  static V fnma(V a, V b, V c) { return std::fma(-a, b, c); }
  static V keep(V v, int) { return v; }
  static V amax(V a, V x) { return std::fabs(x) > a ? std::fabs(x) : a; }
  static void to_array(V v, A* o) { *o = v; }
  static void fence() {}

  template <class T> static T raw(const T* p) { T t; std::memcpy(&t, p, sizeof(T)); return t; }
  static V load(const double* p) { return static_cast<V>(raw(p)); }
  static V load(const float* p) { return static_cast<V>(raw(p)); }
  static V load(const half_t* p) { return f16_to_f32(raw(p).bits); }
  static V load(const bf16_t* p) { return bf16_to_f32(raw(p).bits); }
  template <class T> static V load_n(const T* p, int) { return load(p); }

  template <class T> static void put(T* p, T v) { std::memcpy(p, &v, sizeof(T)); }
  static void store(double* p, V v) { put(p, static_cast<double>(v)); }
  static void store(float* p, V v) { put(p, static_cast<float>(v)); }
  static void store(half_t* p, V v) { put(p, half_t{f32_to_f16(static_cast<float>(v))}); }
  static void store(bf16_t* p, V v) { put(p, bf16_t{f32_to_bf16(static_cast<float>(v))}); }
  template <class T> static void store_n(T* p, V v, int) { store(p, v); }
  template <class T> static void stream(T* p, V v) { store(p, v); }
};
using SimdD = SimdScalar<double>;
using SimdF = SimdScalar<float>;

}  // namespace bn::isa_portable
#endif
