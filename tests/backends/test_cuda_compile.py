"""Compile every CUDA kernel source for sm_80 and sm_90 with nvcc: no GPU needed.

Each layout's source (backends/cuda/bn_channel_{first,last}.cu, with the headers it includes)
is compiled with every kernel instantiation the backend can launch
(backends.cuda.kernels.kernel_names) under ``-Werror all-warnings`` and ptxas's
``-warn-spills -warn-lmem-usage -Werror``; ptxas's resource report must show no stack frame
and no spills for any kernel. A PTX build checks that the 16-byte-pack instantiations issue
128-bit global loads. Where an NVRTC library is found (the compiler CuPy uses at run time),
each layout's self-contained module source is also compiled through it and its log must be
free of warnings.

Skipped, with the reason, where nvcc is not installed.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from backends.cuda import kernels

ARCHES = ("sm_80", "sm_90")
LAYOUTS = tuple(kernels.LAYOUTS)
NVCC = shutil.which("nvcc") or next(
    (str(p) for p in (Path("/usr/local/cuda/bin/nvcc"),) if p.is_file()), None)
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed (CUDA toolkit)")


def wrapper_source(layout: str, names) -> str:
    """A translation unit that includes a layout's source and instantiates the named kernels
    (taking a kernel template's address instantiates it)."""
    table = ",\n".join(f"    reinterpret_cast<const void*>(&{name})" for name in names)
    return (f'#include "{kernels.source_path(layout)}"\n'
            "extern const void* const bn_instantiated[];\n"
            f"const void* const bn_instantiated[] = {{\n{table}\n}};\n")


def nvcc(args, source: str, workdir: Path, stem: str) -> subprocess.CompletedProcess:
    path = workdir / f"{stem}.cu"
    path.write_text(source, encoding="utf-8")
    cmd = [NVCC, *kernels.compile_options(), *args, str(path)]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)


def build_cubin(layout: str, arch: str, workdir: Path) -> subprocess.CompletedProcess:
    args = [f"-arch={arch}", "-cubin", "-o", f"{layout}_{arch}.cubin", "-Werror", "all-warnings",
            "-Xptxas", "-v,-warn-spills,-warn-lmem-usage,-Werror"]
    return nvcc(args, wrapper_source(layout, kernels.kernel_names(layout)), workdir,
                f"{layout}_{arch}")


def output(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr).strip()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_compiles_for_sm80_and_sm90_without_warnings_spills_or_stack(tmp_path, layout):
    """One test per layout, its two architectures compiled side by side: under pytest-xdist
    each layout lands on one worker and nothing is compiled twice."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(ARCHES)) as pool:
        results = dict(zip(ARCHES, pool.map(lambda a: build_cubin(layout, a, tmp_path), ARCHES)))
    expected = len(kernels.kernel_names(layout))
    for arch, result in results.items():
        text = output(result)
        assert result.returncode == 0, f"nvcc failed for {layout} on {arch}:\n{text}"
        warnings = [line for line in text.splitlines()
                    if re.search(r"\bwarning\b", line, re.IGNORECASE)]
        assert not warnings, f"{layout} on {arch}: compiler warnings\n" + "\n".join(warnings)
        entries = re.findall(r"Compiling entry function '([^']+)'", text)
        assert len(entries) == expected, (
            f"{layout} on {arch}: ptxas reported {len(entries)} kernels, expected {expected}")
        frames = re.findall(
            r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text)
        assert len(frames) == expected and all(f == ("0", "0", "0") for f in frames), (
            f"{layout} on {arch}: stack frames or spills (kernels use registers only)\n{text}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_16_byte_packs_issue_128_bit_loads(tmp_path, layout):
    names = [kernels.kernel_name(layout, stage, dtype, vec, policy)
             for dtype in kernels.CXX_TYPES
             for vec in kernels.vector_widths(dtype) if vec * kernels.ITEMSIZE[dtype] == 16
             for stage, policies in kernels.POLICIES.items() for policy in policies]
    result = nvcc(["-arch=sm_90", "-ptx", "-o", "packs.ptx"], wrapper_source(layout, names),
                  tmp_path, "packs")
    assert result.returncode == 0, output(result)
    ptx = (tmp_path / "packs.ptx").read_text()
    bodies = re.split(r"\.entry\s+", ptx)[1:]
    assert len(bodies) == len(names)
    wide = re.compile(r"ld\.global(\.nc)?\.v(4\.(f32|b32|u32)|2\.(f64|b64|u64))")
    narrow = [body.split("(", 1)[0] for body in bodies if not wide.search(body)]
    assert not narrow, f"kernels without a 128-bit load: {narrow}"


# --- NVRTC, the run-time compiler CuPy uses ---------------------------------------------------


def find_nvrtc() -> str | None:
    """Return a loadable libnvrtc path ($BN_NVRTC, the CUDA toolkit, or the system), or None."""
    candidates = [os.environ.get("BN_NVRTC")]
    if NVCC:
        root = Path(NVCC).resolve().parent.parent
        candidates += sorted(str(p) for p in root.glob("lib*/libnvrtc.so*"))
    candidates.append(ctypes.util.find_library("nvrtc"))
    for candidate in filter(None, candidates):
        try:
            ctypes.CDLL(candidate)
        except OSError:
            continue
        return candidate
    return None


def nvrtc_compile(library: str, source: str, names, arch: str) -> tuple[int, str]:
    """Compile source with NVRTC for arch, instantiating names, and look up each name's
    lowered (mangled) name as CuPy does; return (status, log)."""
    lib = ctypes.CDLL(library)
    program = ctypes.c_void_p()
    status = lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"bn_module.cu", 0,
                                    None, None)
    if status:
        return status, "nvrtcCreateProgram failed"
    try:
        for name in names:
            lib.nvrtcAddNameExpression(program, name.encode())
        options = [o.encode() for o in kernels.compile_options()] + [
            f"--gpu-architecture={arch}".encode()]
        status = lib.nvrtcCompileProgram(program, len(options),
                                         (ctypes.c_char_p * len(options))(*options))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(max(1, size.value))
        lib.nvrtcGetProgramLog(program, log)
        text = log.value.decode(errors="replace")
        for name in names if status == 0 else ():  # what CuPy's get_function looks up
            lowered = ctypes.c_char_p()
            if lib.nvrtcGetLoweredName(program, name.encode(), ctypes.byref(lowered)):
                return 1, f"{text}\nno lowered name for {name}"
        return status, text
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_nvrtc_module_compiles_without_warnings(layout):
    library = find_nvrtc()
    if library is None:
        pytest.skip("no libnvrtc found (set BN_NVRTC=/path/to/libnvrtc.so to check the "
                    "run-time compile path)")
    for dtype in kernels.CXX_TYPES:
        status, log = nvrtc_compile(library, kernels.module_source(layout),
                                    kernels.kernel_names(layout, dtype), "sm_90")
        assert status == 0 and "warning" not in log.lower(), (
            f"NVRTC, {layout} {dtype}: status {status}\n{log}")
