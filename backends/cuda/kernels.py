"""The CUDA kernels as the host sees them: sources, types, vector widths, names, constants.

Pure Python (no CuPy): the loader, the launch planner, the compile test and the benchmark
all take these facts from here. The constants that the kernels and the host must agree on
(block size, packs per step, flag bits, workspace fields) are read from the headers
themselves, so they are written down once, in C++.

Kernels (one per layout and stage; ``bn_channel_first.cu`` / ``bn_channel_last.cu``)::

    bn::bn_reduce_{cf,cl}<T, VEC, bn::StatsReducer | bn::GradReducer>
    bn::bn_apply_{cf,cl}<T, VEC, bn::NormalizeOp | bn::InputGradOp>

T is the storage type of the data dtype and VEC the elements per pack: the widest power of
two with VEC * sizeof(T) <= 16 bytes that divides the contiguous run (inner for channel-first,
C for channel-last), so that every pack is aligned to its own size.
"""
from __future__ import annotations

import re
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
HEADERS = ("bn_common.cuh", "bn_ops.cuh")
#: layout -> (source file, kernel name suffix)
LAYOUTS = {"channel_first": ("bn_channel_first.cu", "cf"),
           "channel_last": ("bn_channel_last.cu", "cl")}
#: stage -> the policies its kernels are instantiated with
POLICIES = {"reduce": ("StatsReducer", "GradReducer"), "apply": ("NormalizeOp", "InputGradOp")}

CXX_TYPES = {"float64": "double", "float32": "float", "float16": "bn::half_t",
             "bfloat16": "bn::bf16_t"}
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
#: Accumulation dtype = dtype of parameters, running statistics and the per-channel workspace.
ACC_DTYPES = {"float64": "float64", "float32": "float32", "float16": "float32",
              "bfloat16": "float32"}
#: Bytes of one 128-bit access.
VECTOR_BYTES = 16
#: NVRTC / nvcc options the sources are written for (no other headers are needed).
CXX_STANDARD = "-std=c++17"


def _read(name: str) -> str:
    return (SOURCE_DIR / name).read_text(encoding="utf-8")


def _constexpr_int(text: str, name: str) -> int:
    match = re.search(rf"constexpr\s+int\s+{name}\s*=\s*(\d+)\s*;", text)
    if match is None:
        raise RuntimeError(f"constexpr int {name} not found in the CUDA headers")
    return int(match.group(1))


def _enum(text: str, enum_name: str) -> dict[str, int]:
    """Return {enumerator: value} of a C++ enum whose values are literals, `1u << n` or
    implicit (previous + 1)."""
    body = re.search(rf"enum\s+{enum_name}\b[^{{]*\{{(.*?)\}};", text, re.S)
    if body is None:
        raise RuntimeError(f"enum {enum_name} not found in the CUDA headers")
    values, nxt = {}, 0
    for item in re.sub(r"//[^\n]*", "", body.group(1)).split(","):
        item = item.strip()
        if not item:
            continue
        name, _, expr = (part.strip() for part in item.partition("="))
        if expr:
            shift = re.fullmatch(r"1u?\s*<<\s*(\d+)", expr)
            nxt = 1 << int(shift.group(1)) if shift else int(expr.rstrip("uU"))
        values[name] = nxt
        nxt += 1
    return values


_COMMON, _OPS = _read("bn_common.cuh"), _read("bn_ops.cuh")
BLOCK_THREADS = _constexpr_int(_COMMON, "kBlockThreads")
WARP_SIZE = _constexpr_int(_COMMON, "kWarpSize")
PACKS = _constexpr_int(_COMMON, "kPacks")
MIN_BLOCKS_PER_SM = _constexpr_int(_COMMON, "kMinBlocksPerSM")
#: Bytes reserved per partial state of the two-stage reduction.
STATE_BYTES = _constexpr_int(_COMMON, "kStateBytes")
FLAGS = _enum(_OPS, "Flags")
CHAN_FIELDS = {name: value for name, value in _enum(_OPS, "ChanField").items()
               if name != "kChanFields"}
CHAN_FIELD_COUNT = len(CHAN_FIELDS)


def vector_widths(dtype: str) -> tuple[int, ...]:
    """Return the pack widths (elements) instantiated for a dtype: 1, 2, ... up to 16 bytes."""
    widths, vec = [], 1
    while vec * ITEMSIZE[dtype] <= VECTOR_BYTES:
        widths.append(vec)
        vec *= 2
    return tuple(widths)


def vector_width(dtype: str, run: int) -> int:
    """Return the widest pack width of dtype that divides run (the contiguous elements of a
    channel's row); 1 (scalar) when none does."""
    return max(w for w in vector_widths(dtype) if run % w == 0)


def kernel_name(layout: str, stage: str, dtype: str, vec: int, policy: str) -> str:
    """Return the C++ name expression of one kernel instantiation."""
    if policy not in POLICIES[stage]:
        raise ValueError(f"policy={policy!r} is not one of {POLICIES[stage]} for stage {stage!r}")
    if vec not in vector_widths(dtype):
        raise ValueError(f"vec={vec} is not a pack width of {dtype}: {vector_widths(dtype)}")
    suffix = LAYOUTS[layout][1]
    return f"bn::bn_{stage}_{suffix}<{CXX_TYPES[dtype]}, {vec}, bn::{policy}>"


def kernel_names(layout: str, dtype: str | None = None) -> list[str]:
    """Return every kernel instantiation of a layout (of one dtype, or of all)."""
    dtypes = [dtype] if dtype else list(CXX_TYPES)
    return [kernel_name(layout, stage, d, vec, policy)
            for d in dtypes for vec in vector_widths(d)
            for stage, policies in POLICIES.items() for policy in policies]


def source_path(layout: str) -> Path:
    return SOURCE_DIR / LAYOUTS[layout][0]


def module_source(layout: str) -> str:
    """Return the self-contained source of a layout's module for NVRTC: the headers and the
    layout's .cu with the local #include lines dropped, so that a compile cache keyed on the
    source text (CuPy's) also sees every header change."""
    local = re.compile(r'^\s*#\s*include\s+"(%s)"\s*$' % "|".join(map(re.escape, HEADERS)), re.M)
    parts = [_read(name) for name in HEADERS] + [source_path(layout).read_text(encoding="utf-8")]
    return "\n".join(local.sub("", part) for part in parts)


def compile_options() -> tuple[str, ...]:
    """Options for NVRTC (CuPy RawModule) and nvcc: the C++ standard the sources use."""
    return (CXX_STANDARD,)
