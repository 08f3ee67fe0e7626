"""The CUDA backend (``--backend cuda``): CUDA C++ kernels loaded through CuPy/NVRTC.

Imports cleanly without CuPy or a GPU; ``CudaBackend().supports(case)`` then gives the
reason its cases are skipped. README.md beside this file describes the kernels, the two MXNet
GPU paths (``cudnn_off``) and how to run the tests and the benchmark on a GPU.
"""
from .backend import CudaBackend, cudnn_factory, dispatch_factory, factory

__all__ = ["CudaBackend", "cudnn_factory", "dispatch_factory", "factory"]
