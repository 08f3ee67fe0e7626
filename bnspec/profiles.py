"""Named variant lists that backends declare as their semantic profile.

A profile is a tuple of variant names (``Capabilities.profile`` /
``Capabilities.quantized_profile``); the oracle defines what each name means
(``oracle.variants``) and checks that every name here is one it knows
(tests/oracle/test_bnspec_profiles.py). Backends take the names from here, never from the oracle.
"""
from __future__ import annotations

#: MXNet 1.9.1 CPU (oneDNN) quantized batch norm as observed: all three quantized variants
#: (tests/oracle/test_quantized.py, README "Quantized path").
MXNET_QUANTIZED_PROFILE: tuple[str, ...] = ("qnt_slope_eps_twice", "qnt_shift_127.5",
                                            "qnt_uint8_requantized")

#: MXNet 1.9.1 CPU (backends/mxnet_adapter.py): its float16 kernel rounds every step to
#: float16 (tests/backends/mxnet_reference.py emulates it bit for bit). Its float64 kernel
#: follows the semantics; its float32 path (oneDNN) differs only where var + eps = 0, which
#: its own kernels do not share: a known deviation, not a profile.
MXNET_PROFILE: tuple[str, ...] = ("fp16_stepwise_rounding",)
#: PyTorch's F.batch_norm (backends/torch_adapter.py): the cuDNN-style running statistics,
#: eps added as the double given, and no saved mean/invstd when it normalises with the
#: running statistics (native_batch_norm's save_mean/save_invstd are empty).
TORCH_PROFILE: tuple[str, ...] = ("running_var_unbiased", "stats_updated_in_forward",
                                  "eps_not_cast", "no_mean_invstd_with_running_stats")
#: ONNX BatchNormalization-15 on ONNX Runtime (backends/onnxruntime_adapter.py): the running
#: statistics come back from the forward call, epsilon is a float32 attribute, Y follows
#: (X - mean) / sqrt(var + epsilon) literally (inf at var + eps = 0), and opset 14 removed the
#: saved mean/invstd outputs. (Its running_var is the batch variance itself, which with
#: eps_float32 and invstd_inf_at_zero equals 1/invstd^2 - eps exactly, so
#: running_var_from_batch_var would change no expected value.)
ONNXRUNTIME_PROFILE: tuple[str, ...] = ("stats_updated_in_forward", "eps_float32",
                                        "invstd_inf_at_zero", "no_mean_invstd")
#: Flax's flax.linen.BatchNorm on JAX (backends/jax_adapter.py): the running statistics come
#: back from the forward call (mutable batch_stats), eps is added in the float32 (or float64)
#: statistics, not rounded to a 16-bit data dtype, y follows (x - mean) * rsqrt(var + eps)
#: literally (NaN where var + eps = 0), and no mean/invstd is returned.
JAX_PROFILE: tuple[str, ...] = ("stats_updated_in_forward", "eps_not_cast", "no_mean_invstd",
                                "invstd_inf_at_zero")
#: Keras 3's keras.layers.BatchNormalization on TensorFlow (backends/tensorflow_adapter.py):
#: the moving statistics are updated in the forward call, eps is added in the float32 (or
#: float64) statistics, not rounded to a 16-bit data dtype, y = x * inv + (beta - mean * inv)
#: with inv = gamma * rsqrt(var + eps) (NaN where var + eps = 0), and the layer returns y only.
TENSORFLOW_PROFILE: tuple[str, ...] = ("stats_updated_in_forward", "eps_not_cast",
                                       "no_mean_invstd", "invstd_inf_at_zero")
#: PaddlePaddle's paddle.nn.functional.batch_norm on the CPU (backends/paddle_adapter.py): the
#: running statistics are written in the forward call; its epsilon attribute is a float32; the
#: saved inverse std is 1/sqrt(var + eps) literally (inf at var + eps = 0); with the running
#: statistics its saved mean/inverse std outputs are left unwritten, so nothing is returned
#: there. (Its running_var takes the biased batch variance itself, which with eps_float32 and
#: invstd_inf_at_zero equals 1/invstd^2 - eps exactly: running_var_from_batch_var would change
#: no expected value, as for onnxruntime.)
PADDLE_PROFILE: tuple[str, ...] = ("stats_updated_in_forward", "eps_float32",
                                   "invstd_inf_at_zero", "no_mean_invstd_with_running_stats")
#: OpenVINO's BatchNormInference on the CPU plugin (backends/openvino_adapter.py, inference
#: only): the plugin decomposes the node into scale = gamma / sqrt(variance + eps) and
#: y = x * scale + (beta - mean * scale) with eps a constant of the float32 computation, so eps
#: is float32(eps) for every data dtype (float16/bfloat16 data run through a float32 node;
#: float64 models are converted to float32).
OPENVINO_PROFILE: tuple[str, ...] = ("eps_float32",)
