"""High-precision reference of mxnet.npx.batch_norm (MXNet 1.9.1 semantics).

    import oracle
    out = oracle.batch_norm(x, gamma, beta, rm, rv, fix_gamma=False, training=True)
    grads = oracle.batch_norm_backward(x, gamma, beta, rm, rv, dy, training=True)

Both return numpy arrays, correctly rounded to the output dtype, by name. ``oracle.evaluate``
returns the high-precision values and condition scales the golden cases are made of.
The quantized path (int8/uint8 data, min/max_calib_range): ``oracle.quantized_batch_norm``
and ``oracle.evaluate_quantized`` (oracle/quantized.py).
"""
from bnspec.flags import DEFAULT_EPS, DEFAULT_MOMENTUM

from .api import (Expected, ExpectedBlocks, QuantizedExpected, batch_norm, batch_norm_backward,
                  evaluate, evaluate_quantized, evaluate_streamed, output_dtype,
                  quantized_batch_norm)

__version__ = "0.1.0"
#: Working precision (bits) of the multiprecision parts of the oracle.
PRECISION_BITS = 256

__all__ = ["Expected", "ExpectedBlocks", "QuantizedExpected", "batch_norm",
           "batch_norm_backward", "evaluate", "evaluate_quantized", "evaluate_streamed",
           "quantized_batch_norm", "output_dtype",
           "DEFAULT_EPS", "DEFAULT_MOMENTUM", "__version__", "PRECISION_BITS"]
