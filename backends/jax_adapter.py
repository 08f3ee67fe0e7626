"""The ``jax`` backend: Flax's ``flax.linen.BatchNorm`` on JAX (CPU), gradients by ``jax.vjp``.

    pip install -e ".[jax]"        # jax[cpu] and flax, pinned in pyproject.toml
    pytest conformance/ --backend jax            # Flax's defaults (one-pass variance)
    pytest conformance/ --backend jax-twopass    # use_fast_variance=False

JAX's pins do not clash with the suite's (numpy 2), so the adapter runs in process. Every
call builds the module a Flax user writes and applies it under ``jax.jit`` (compiled once
per configuration and shape):

    bn = flax.linen.BatchNorm(use_running_average=..., axis=axis, momentum=momentum,
                              epsilon=eps, dtype=x.dtype, param_dtype=gamma.dtype,
                              use_scale=not fix_gamma, use_fast_variance=...)
    y, updates = bn.apply({"params": {"scale": gamma, "bias": beta},
                           "batch_stats": {"mean": running_mean, "var": running_var}},
                          x, mutable=["batch_stats"])

and for the gradients ``jax.vjp`` of that function of (x, params) with ``dy`` as cotangent.

Flag mapping, MXNet -> Flax (read from flax/linen/normalization.py, flax 0.12):

- axis: Flax's ``axis`` (the feature axis), as given (negative axes allowed).
- training / use_global_stats: ``use_running_average = not training or use_global_stats``.
- momentum: the same convention as MXNet (the weight of the old running statistic):
  ``ra = momentum * ra + (1 - momentum) * batch_stat``, in the running statistics' dtype.
  MXNet's momentum parameter is a float32, so the adapter passes ``float(float32(momentum))``
  (as the torch adapter does); a double 0.9 would differ in float64 running statistics.
- eps: ``var + epsilon`` in the statistics' dtype, which is at least float32
  (``force_float32_reductions``): float32(eps) for float32 and 16-bit data, the double for
  float64 data. MXNet adds DType(eps): the same for float32/float64, float16(eps) or
  bfloat16(eps) for 16-bit data; declared as ``eps_not_cast`` (eps kept wider than a 16-bit
  dtype).
- variance: Flax's default ``use_fast_variance=True`` computes var = E[x^2] - E[x]^2 in float32
  (clipped at 0); ``jax-twopass`` sets it False: E[(x - E[x])^2]. Both are the biased batch
  variance, in exact arithmetic equal to MXNet's; the one-pass formula loses digits when the
  mean is large against the spread (a precision defect of the default, not a semantics).
- running statistics: updated **in the forward call** (the mutable ``batch_stats``), with the
  biased batch variance; returned by ``forward`` and ``backward`` as Flax leaves them and
  written back into the caller's arrays. Declared as ``stats_updated_in_forward``.
- fix_gamma=True: ``use_scale=False`` (no scale parameter) and dgamma reported as 0.
- output_mean_var: Flax returns no mean or inverse standard deviation: ``no_mean_invstd``.
- dtypes: float64 (``jax_enable_x64`` is switched on when the adapter loads: without it JAX
  silently computes float64 data in float32), float32, float16, bfloat16; the statistics and
  the normalisation run in float32 for 16-bit data and y is cast to x's dtype (``dtype``).

Exceptions: JAX's and Python's ValueError/TypeError pass unchanged; Flax's own errors
(``flax.errors.FlaxError``, e.g. ScopeParamShapeError for a gamma of the wrong length) are
reported as ``backends.frameworks.RejectedInput`` with the message verbatim. The adapter
validates nothing itself.
"""
from __future__ import annotations

import functools

import numpy as np

from bnspec.profiles import JAX_PROFILE
from conformance.adapter import ALL_DTYPES, Capabilities

from .frameworks import UnavailableBackend, native, rejections, write_back

INSTALL = "pip install -e '.[jax]' (jax[cpu] and flax, pinned in pyproject.toml)"


def _capabilities() -> Capabilities:
    return Capabilities(dtypes=ALL_DTYPES, forward=True, backward=True, quantized=False,
                        device="cpu", profile=JAX_PROFILE)


class JaxBackend:
    """Flax's BatchNorm under jax.jit, gradients from jax.vjp (see module doc)."""

    def __init__(self, fast_variance: bool = True):
        import flax
        import jax

        jax.config.update("jax_enable_x64", True)
        self._jax = jax
        self._fast_variance = fast_variance
        self.name = "jax" if fast_variance else "jax-twopass"
        self.version = (f"jax {jax.__version__}, flax {flax.__version__} "
                        f"(use_fast_variance={fast_variance}, {jax.default_backend()})")
        self.capabilities = _capabilities()
        self._errors = (flax.errors.FlaxError,)

    def supports(self, case) -> str | None:
        """Return None for every float case; there is no quantized path."""
        if getattr(case, "op", None) == "qnt":
            return "Flax has no quantized batch norm"
        return None

    def forward(self, x, gamma, beta, running_mean, running_var, *, eps, momentum,
                fix_gamma, use_global_stats, output_mean_var, axis, training,
                cudnn_off=False) -> dict[str, np.ndarray]:
        """Return y and the running statistics as Flax leaves them after the call."""
        with rejections("flax", self._errors):
            config = self._config(x, gamma, axis, eps, momentum, fix_gamma,
                                  not training or use_global_stats)
            variables = _variables(gamma, beta, running_mean, running_var, fix_gamma)
            y, stats = _forward(config)(variables, native(x))
            out = {"y": np.asarray(y)}
            out.update(_written_back(stats, running_mean, running_var))
        return out

    def backward(self, x, gamma, beta, running_mean, running_var, dy, *, eps, momentum,
                 fix_gamma, use_global_stats, output_mean_var, axis, training,
                 cudnn_off=False) -> dict[str, np.ndarray]:
        """Return dx, dgamma (0 under fix_gamma), dbeta of jax.vjp with cotangent dy, and the
        running statistics as the forward pass of that step left them."""
        with rejections("flax", self._errors):
            config = self._config(x, gamma, axis, eps, momentum, fix_gamma,
                                  not training or use_global_stats)
            variables = _variables(gamma, beta, running_mean, running_var, fix_gamma)
            dx, dparams, stats = _backward(config)(variables, native(x), native(dy))
            out = {"dx": np.asarray(dx),
                   "dgamma": (np.zeros(np.shape(gamma), np.asarray(gamma).dtype) if fix_gamma
                              else np.asarray(dparams["scale"])),
                   "dbeta": np.asarray(dparams["bias"])}
            out.update(_written_back(stats, running_mean, running_var))
        return out

    def _config(self, x, gamma, axis, eps, momentum, fix_gamma, use_running_average):
        """Return the hashable module configuration of one call: axis as given (Flax judges
        it), momentum as MXNet's float32, eps as the double given."""
        return (axis, float(np.float32(_real("momentum", momentum))), _real("eps", eps),
                np.asarray(x).dtype.name, np.asarray(gamma).dtype.name, bool(fix_gamma),
                bool(use_running_average), self._fast_variance)


def _real(name: str, value) -> float:
    """Return value as a float; a value that is not a real number raises TypeError naming the
    parameter (the adapter must convert it to build Flax's module, which takes floats)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}={value!r} is not a real number, so it is no Flax {name}")
    return float(value)


def _module(config):
    """Return the flax.linen.BatchNorm of a configuration."""
    import flax.linen as nn
    import jax.numpy as jnp

    axis, momentum, eps, x_dtype, param_dtype, fix_gamma, use_running_average, fast = config
    return nn.BatchNorm(use_running_average=use_running_average, axis=axis, momentum=momentum,
                        epsilon=eps, dtype=jnp.dtype(x_dtype), param_dtype=jnp.dtype(param_dtype),
                        use_scale=not fix_gamma, use_fast_variance=fast)


@functools.lru_cache(maxsize=256)
def _forward(config):
    """Return the jitted forward of a configuration: (variables, x) -> (y, batch_stats)."""
    import jax

    module = _module(config)

    def apply(variables, x):
        y, updates = module.apply(variables, x, mutable=["batch_stats"])
        return y, updates["batch_stats"]

    return jax.jit(apply)


@functools.lru_cache(maxsize=256)
def _backward(config):
    """Return the jitted training step of a configuration:
    (variables, x, dy) -> (dx, dparams, batch_stats)."""
    import jax

    module = _module(config)

    def step(variables, x, dy):
        def f(x, params):
            y, updates = module.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                      x, mutable=["batch_stats"])
            return y, updates["batch_stats"]

        _, vjp, stats = jax.vjp(f, x, variables["params"], has_aux=True)
        dx, dparams = vjp(dy)
        return dx, dparams, stats

    return jax.jit(step)


def _variables(gamma, beta, running_mean, running_var, fix_gamma) -> dict:
    """Return Flax's variable collections for the caller's arrays (copies)."""
    params = {"bias": native(beta)}
    if not fix_gamma:
        params["scale"] = native(gamma)
    return {"params": params,
            "batch_stats": {"mean": native(running_mean), "var": native(running_var)}}


def _written_back(stats, running_mean, running_var) -> dict[str, np.ndarray]:
    """Return Flax's running statistics after the call, written into the caller's arrays
    (backends.frameworks.write_back)."""
    out = {"running_mean": np.asarray(stats["mean"]), "running_var": np.asarray(stats["var"])}
    write_back(running_mean, out["running_mean"])
    write_back(running_var, out["running_var"])
    return out


def factory(fast_variance: bool = True):
    """Return the jax backend, or one that skips every case when JAX or Flax is missing."""
    try:
        return JaxBackend(fast_variance)
    except ImportError as exc:
        name = "jax" if fast_variance else "jax-twopass"
        return UnavailableBackend(name, _capabilities(),
                                  f"JAX/Flax is not installed ({exc}): {INSTALL}")


def twopass_factory():
    """Return the jax backend with use_fast_variance=False (``--backend jax-twopass``)."""
    return factory(fast_variance=False)
