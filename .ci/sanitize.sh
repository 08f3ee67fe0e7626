#!/usr/bin/env bash
# Builds backends/cpu with AddressSanitizer + UndefinedBehaviorSanitizer into build/sanitize and
# runs the cpu backend's tests and the conformance suite (strict) on that build. Fails on any
# sanitizer report. Usage: bash .ci/sanitize.sh [extra pytest args for the conformance run]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=$ROOT/build/sanitize
PY=${PYTHON:-python3}

if ! command -v "${CXX:-g++}" >/dev/null 2>&1; then
  echo "sanitize: no C++ compiler; nothing to check" >&2
  exit 1
fi

NB_DIR=$("$PY" -m nanobind --cmake_dir)
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBN_SANITIZE=ON \
  -DPython_EXECUTABLE="$(command -v "$PY")" -Dnanobind_ROOT="$NB_DIR" >"$BUILD.cmake.log" 2>&1 \
  || { cat "$BUILD.cmake.log"; exit 1; }
cmake --build "$BUILD" -j 2 >"$BUILD.build.log" 2>&1 || { tail -50 "$BUILD.build.log"; exit 1; }
EXT=$(ls "$BUILD"/backends/cpu/_bn_cpu*.so | head -1)

# Python itself is not instrumented: the ASan runtime must come first in the process, and
# libstdc++ with it (else ASan's __cxa_throw interceptor finds no real __cxa_throw).
ASAN_LIB=$("${CXX:-g++}" -print-file-name=libasan.so)
STDCXX_LIB=$("${CXX:-g++}" -print-file-name=libstdc++.so)
LOG=$BUILD/reports
rm -rf "$LOG" && mkdir -p "$LOG"
export LD_PRELOAD="$ASAN_LIB $STDCXX_LIB"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$LOG/asan
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$LOG/ubsan
export BN_CPU_EXTENSION=$EXT
export OMP_NUM_THREADS=2

status=0
"$PY" -c "import backends.cpu as c; c.CpuBackend(); print('sanitize: loaded', c.extension().__file__, c.get_isa())"
"$PY" -m pytest -q -p no:cacheprovider tests/backends/test_cpu_backend.py || status=1
# every kernel set, not only the best one
for isa in portable avx2; do
  BN_CPU_ISA=$isa "$PY" -m pytest -q -p no:cacheprovider tests/backends/test_cpu_backend.py \
    -k "spec_formulas and $isa or bit_identical or alignment" || status=1
done
if ls cases/*.yaml >/dev/null 2>&1; then
  "$PY" -m pytest -q -p no:cacheprovider conformance/ --backend cpu --tolerance strict \
    --report-dir "$LOG/conformance" "$@" || status=1
else
  echo "sanitize: no golden cases yet; conformance run skipped" >&2
fi

if ls "$LOG"/asan* "$LOG"/ubsan* >/dev/null 2>&1; then
  echo "sanitize: sanitizer reports:" >&2
  cat "$LOG"/asan* "$LOG"/ubsan* >&2
  status=1
fi
[ $status -eq 0 ] && echo "sanitize: zero sanitizer reports"
exit $status
