"""Generated bad and unusual inputs for ``conformance/test_errors.py``.

Two lists of ``Scenario``s, each a function that builds a fresh call (arrays and keyword
arguments) so that every test owns its arrays:

- ``INVALID``: input the spec ("Errors a conforming backend raises") or the adapter contract
  makes an error: wrong parameter shapes, axis out of range or not an integer, rank 0 and 1,
  empty arrays, non-float and mixed dtypes, negative or NaN eps, momentum NaN or infinite or
  not a number, and arrays that the call writes (running statistics in a training step,
  gamma under fix_gamma) sharing memory with another argument. The backend must raise one of
  ``exceptions``, whose message names every parameter in ``names`` and the offending
  ``value``, and leave every array bit-identical.
- ``UNUSUAL``: valid input in an unusual memory layout or of an unusual value: strided,
  Fortran-ordered, reversed, broadcast (stride 0), unaligned, big-endian and read-only arrays,
  several arguments carved from one buffer without overlap, read-only arguments that alias
  each other, momentum outside [0, 1], eps of 0, -0.0 and the smallest subnormal. Where
  ``may_reject`` the backend may refuse the layout (ValueError or TypeError naming one of
  ``names``, nothing written); otherwise, and always for the values, it must return what the
  oracle computes from contiguous native copies.

Decisions the spec leaves open, taken here: momentum outside [0, 1] is valid (the spec's
error list does not name it, MXNet takes any float, and the update formula is defined for
it), so a backend must compute it; a written array that overlaps another argument is an
error (no order of reads and writes makes the result well defined); a read-only overlap
(dy is x, gamma is beta without fix_gamma) is valid.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from bnspec.flags import DEFAULT_EPS, DEFAULT_MOMENTUM, DTYPES, numpy_dtype
from bnspec.validate import PARAMETER_NAMES

ARRAY_NAMES = ("x", "gamma", "beta", "running_mean", "running_var", "dy")
OPS = ("forward", "step")  # a forward call, or a training step (forward + backward)


@dataclasses.dataclass
class Call:
    """One call: the arrays by name, the keyword arguments, and guard arrays (memory next
    to the arguments, which no call may touch)."""

    arrays: dict[str, np.ndarray]
    kwargs: dict
    guards: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def written(self, op: str, variants=()) -> tuple[str, ...]:
        """Return the names of the arrays the contract lets this call write in place: gamma
        under fix_gamma; the running statistics in a training step with batch statistics,
        and in its forward call too where the backend declares stats_updated_in_forward."""
        names = ("gamma",) if self.kwargs["fix_gamma"] else ()
        updates = op == "step" or "stats_updated_in_forward" in variants
        if updates and self.kwargs["training"] and not self.kwargs["use_global_stats"]:
            names += ("running_mean", "running_var")
        return names


class _NamesOnly:
    """The value of a scenario whose message needs only the parameter names (overlaps)."""

    def __repr__(self) -> str:
        return "NAMES_ONLY"


NAMES_ONLY = _NamesOnly()


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A bad or unusual input (see the module doc)."""

    id: str
    op: str  # "forward" or "step"
    build: Callable[[], Call]
    names: tuple[str, ...]  # parameters the error message must name (all of them)
    value: object = NAMES_ONLY  # the offending value the message must show (mentions_value)
    exceptions: tuple[type[BaseException], ...] = (ValueError,)
    dtype: str = "float32"  # the data dtype: a backend without it skips the scenario
    may_reject: bool = False  # UNUSUAL only: refusing the input cleanly is allowed too


def _pdtype(dtype: str) -> np.dtype:
    return numpy_dtype(DTYPES[dtype].param) if dtype in DTYPES else np.dtype(np.float32)


def valid_arrays(dtype: str = "float32", shape=(5, 3), axis: int = 1, seed: int = 0) -> dict:
    """Return the arrays of a valid call: x and dy of dtype and shape, the four parameters of
    length x.shape[axis] in the parameter dtype (running_var > 0)."""
    rng = np.random.default_rng(seed)
    channels = shape[axis]
    p = _pdtype(dtype)
    return {"x": rng.standard_normal(shape).astype(numpy_dtype(dtype)),
            "gamma": (rng.standard_normal(channels) + 1.5).astype(p),
            "beta": rng.standard_normal(channels).astype(p),
            "running_mean": rng.standard_normal(channels).astype(p),
            "running_var": (rng.random(channels) + 0.5).astype(p),
            "dy": rng.standard_normal(shape).astype(numpy_dtype(dtype))}


def default_kwargs(axis: int = 1, **over) -> dict:
    """Return the keyword arguments of a training call with fix_gamma (so gamma is written)."""
    kwargs = {"eps": DEFAULT_EPS, "momentum": DEFAULT_MOMENTUM, "fix_gamma": True,
              "use_global_stats": False, "output_mean_var": True, "axis": axis,
              "training": True, "cudnn_off": False}
    kwargs.update(over)
    return kwargs


def _call(arrays: dict | None = None, **kwargs) -> Callable[[], Call]:
    """Return a builder of a valid float32 (5, 3) call with arrays and kwargs replaced."""
    def build() -> Call:
        base = valid_arrays()
        base.update({k: v() for k, v in (arrays or {}).items()})
        return Call(base, default_kwargs(**kwargs))
    return build


def _both(sid: str, build, names, value=NAMES_ONLY, exceptions=(ValueError,), dtype="float32",
          ops=OPS, may_reject=False) -> list[Scenario]:
    return [Scenario(f"{sid}_{op}", op, build, tuple(names), value, tuple(exceptions), dtype,
                     may_reject) for op in ops]


# --- invalid input ------------------------------------------------------------------------


def _parameter_shapes() -> list[Scenario]:
    """gamma/beta/running_mean/running_var not of shape (C,) for x (5, 3), axis 1."""
    out = []
    shapes = {"short": (2,), "long": (4,), "batchlen": (5,), "column": (3, 1), "scalar": ()}
    for name in PARAMETER_NAMES:
        for tag, shape in shapes.items():
            build = _call({name: lambda s=shape: np.full(s, 0.5, np.float32)})
            out += _both(f"{name}_shape_{tag}", build, (name,), value=shape)
    return out


def _axes() -> list[Scenario]:
    out = []
    for axis in (2, -3, 7, -100, 2**40):
        out += _both(f"axis_range_{_num_token(axis)}_rank2", _call(axis=axis), ("axis",),
                     value=axis)
    for axis in (4, -5):
        def build(axis=axis):
            return Call(valid_arrays(shape=(2, 3, 2, 2)), default_kwargs(axis=axis))
        out += _both(f"axis_range_{_num_token(axis)}_rank4", build, ("axis",), value=axis)
    for tag, axis in (("float", 1.5), ("str", "1"), ("none", None), ("bool", True)):
        out += _both(f"axis_type_{tag}", _call(axis=axis), ("axis",), value=axis,
                     exceptions=(ValueError, TypeError))
    return out


def _ranks_and_empty() -> list[Scenario]:
    out = []

    def rank0():
        arrays = valid_arrays()
        arrays.update(x=np.array(1.5, np.float32), dy=np.array(1.0, np.float32))
        return Call(arrays, default_kwargs(axis=0))

    def rank1(axis):
        def build():
            arrays = valid_arrays(shape=(3,), axis=0)
            return Call(arrays, default_kwargs(axis=axis))
        return build

    out += _both("rank0", rank0, ("x",), value=0)
    out += _both("rank1_axis0", rank1(0), ("x",), value=1)
    out += _both("rank1_axisneg1", rank1(-1), ("x",), value=1)
    for shape, axis in (((0, 3), 1), ((5, 0), 1), ((2, 3, 0), 1), ((0, 3, 2, 2), 1)):
        def build(shape=shape, axis=axis):
            return Call(valid_arrays(shape=shape, axis=axis), default_kwargs(axis=axis))
        out += _both("empty_" + "x".join(map(str, shape)), build, ("x",), value=shape)
    return out


def _x_dtypes() -> list[Scenario]:
    out = []
    kinds = ("int8", "int32", "int64", "uint8", "uint16", "bool", "complex64", "complex128",
             "longdouble", "object", "str", "datetime64")

    def make(kind):
        x = valid_arrays()["x"]
        if kind == "str":
            return np.full(x.shape, "a")
        if kind == "datetime64":
            return np.zeros(x.shape, "datetime64[s]")
        if kind in ("bool",) or kind.startswith(("int", "uint")):
            return (x * 3).astype(kind)
        return x.astype(kind)

    for kind in kinds:
        sample = make(kind)
        out += _both(f"x_dtype_{kind}", _call({"x": lambda k=kind: make(k)}), ("x",),
                     value=sample.dtype.name, exceptions=(TypeError,), dtype=kind)
    return out


def _mixed_dtypes() -> list[Scenario]:
    """Parameters (or dy) of a dtype other than the one the data dtype requires."""
    out = []
    combos = (("float32", "gamma", "float64"), ("float32", "beta", "float16"),
              ("float32", "running_mean", "float64"), ("float32", "running_var", "int32"),
              ("float64", "gamma", "float32"), ("float64", "running_var", "float32"),
              ("float16", "gamma", "float16"), ("float16", "running_var", "bfloat16"),
              ("bfloat16", "beta", "bfloat16"), ("bfloat16", "gamma", "float64"))
    for dtype, name, bad in combos:
        def build(dtype=dtype, name=name, bad=bad):
            arrays = valid_arrays(dtype)
            arrays[name] = arrays[name].astype(np.float64).astype(numpy_dtype(bad))
            return Call(arrays, default_kwargs())
        out += _both(f"{name}_dtype_{bad}_data_{dtype}", build, (name,), value=bad,
                     exceptions=(TypeError,), dtype=dtype)

    def as_list():
        arrays = valid_arrays()
        arrays["gamma"] = arrays["gamma"].astype(np.float64).tolist()
        return Call(arrays, default_kwargs())
    out += _both("gamma_python_list", as_list, ("gamma",), value="float64",
                 exceptions=(TypeError,))
    for tag, dy, exc, value in (("float64", lambda a: a.astype(np.float64), TypeError, "float64"),
                                ("int32", lambda a: (a * 4).astype(np.int32), TypeError, "int32"),
                                ("transposed", lambda a: np.ascontiguousarray(a.T), ValueError,
                                 (3, 5)),
                                ("flat", lambda a: a.ravel(), ValueError, (15,))):
        def build(dy=dy):
            arrays = valid_arrays()
            arrays["dy"] = dy(arrays["dy"])
            return Call(arrays, default_kwargs())
        out += _both(f"dy_{tag}", build, ("dy",), value=value, exceptions=(exc,),
                     ops=("step",))
    return out


def _scalars() -> list[Scenario]:
    out = []
    for tag, eps in (("negative", -1e-3), ("neginf", -np.inf), ("nan", np.nan),
                     ("negsubnormal", -5e-324), ("float32neg", np.float32(-1.0))):
        out += _both(f"eps_{tag}", _call(eps=eps), ("eps",), value=eps)
    for tag, eps in (("none", None), ("str", "abc")):
        out += _both(f"eps_{tag}", _call(eps=eps), ("eps",), value=eps,
                     exceptions=(ValueError, TypeError))
    for tag, momentum in (("nan", np.nan), ("inf", np.inf), ("neginf", -np.inf),
                          ("float32nan", np.float32(np.nan))):
        out += _both(f"momentum_{tag}", _call(momentum=momentum), ("momentum",),
                     value=momentum)
    for tag, momentum in (("none", None), ("str", "abc")):
        out += _both(f"momentum_{tag}", _call(momentum=momentum), ("momentum",),
                     value=momentum, exceptions=(ValueError, TypeError))
    return out


def _overlaps() -> list[Scenario]:
    """Written arrays sharing memory with another argument."""
    def same(name_a, name_b, **kw):
        def build():
            arrays = valid_arrays()
            arrays[name_b] = arrays[name_a]
            return Call(arrays, default_kwargs(**kw))
        return build

    def partial_stats():
        arrays = valid_arrays()
        buf = np.linspace(0.5, 1.5, 4, dtype=np.float32)
        arrays["running_mean"], arrays["running_var"] = buf[0:3], buf[1:4]
        return Call(arrays, default_kwargs())

    def row_of(name, source, row, **kw):
        def build():
            arrays = valid_arrays()
            arrays[name] = arrays[source][row]
            return Call(arrays, default_kwargs(**kw))
        return build

    return [
        Scenario("overlap_running_var_is_running_mean_step", "step",
                 same("running_mean", "running_var"), ("running_mean", "running_var")),
        Scenario("overlap_running_stats_partial_step", "step", partial_stats,
                 ("running_mean", "running_var")),
        Scenario("overlap_running_mean_in_x_step", "step", row_of("running_mean", "x", 0),
                 ("running_mean", "x")),
        Scenario("overlap_running_var_in_dy_step", "step", row_of("running_var", "dy", 2),
                 ("running_var", "dy")),
        Scenario("overlap_gamma_in_x_forward", "forward", row_of("gamma", "x", 1),
                 ("gamma", "x")),
        Scenario("overlap_beta_is_gamma_forward", "forward", same("gamma", "beta"),
                 ("gamma", "beta")),
        Scenario("overlap_running_mean_is_gamma_step", "step", same("gamma", "running_mean"),
                 ("gamma", "running_mean")),
    ]


# --- unusual but valid input --------------------------------------------------------------


def _layout(name: str, kind: str) -> Callable[[], Call]:
    """Return a builder whose array `name` has the given memory layout, same values."""
    def build() -> Call:
        arrays = valid_arrays()
        a = arrays[name]
        guards = {}
        if kind == "strided":
            wide = np.full(a.shape[:-1] + (2 * a.shape[-1],), -7.0, a.dtype)
            wide[..., ::2] = a
            arrays[name] = wide[..., ::2]
            guards[f"{name}_gaps"] = wide[..., 1::2]
        elif kind == "fortran":
            arrays[name] = np.asfortranarray(a)
        elif kind == "reversed":
            arrays[name] = a[::-1].copy()[::-1]
        elif kind == "unaligned":
            raw = bytearray(a.nbytes + 1)
            view = np.ndarray(a.shape, a.dtype, buffer=raw, offset=1)
            view[...] = a
            arrays[name] = view
        elif kind == "bigendian":
            arrays[name] = a.astype(a.dtype.newbyteorder(">"))
        elif kind == "readonly":
            a.flags.writeable = False
        elif kind == "broadcast":
            row = np.ascontiguousarray(a[:1])
            arrays[name] = np.broadcast_to(row, a.shape)
        else:
            raise ValueError(f"layout kind={kind!r} is unknown")
        return Call(arrays, default_kwargs(), guards)
    return build


def _one_buffer() -> Call:
    """x, dy and the four parameters as disjoint slices of one float32 buffer."""
    arrays = valid_arrays()
    sizes = [arrays[n].size for n in ARRAY_NAMES]
    buf = np.empty(sum(sizes) + 1, np.float32)
    buf[-1] = 42.0
    start = 0
    for name, size in zip(ARRAY_NAMES, sizes):
        view = buf[start:start + size].reshape(arrays[name].shape)
        view[...] = arrays[name]
        arrays[name] = view
        start += size
    return Call(arrays, default_kwargs(), {"buffer_tail": buf[-1:]})


def _alias(name_a, name_b, **kw) -> Callable[[], Call]:
    def build() -> Call:
        arrays = valid_arrays()
        arrays[name_b] = arrays[name_a]
        return Call(arrays, default_kwargs(**kw))
    return build


def _unusual() -> list[Scenario]:
    out = []
    layouts = {"x": ("strided", "fortran", "reversed", "unaligned", "bigendian", "readonly",
                     "broadcast"),
               "gamma": ("strided", "bigendian", "unaligned"),
               "beta": ("reversed", "readonly"),
               "running_mean": ("strided", "unaligned", "readonly"),
               "running_var": ("reversed", "bigendian"),
               "dy": ("strided", "fortran", "readonly")}
    for name, kinds in layouts.items():
        ops = ("step",) if name == "dy" else OPS
        for kind in kinds:
            out += _both(f"{name}_{kind}", _layout(name, kind), (name,), ops=ops,
                         may_reject=True)
    out += _both("one_buffer", _one_buffer, ARRAY_NAMES, may_reject=True)
    out += _both("alias_dy_is_x", _alias("x", "dy"), ("x", "dy"), ops=("step",),
                 may_reject=True)
    out += _both("alias_beta_is_gamma_freegamma", _alias("gamma", "beta", fix_gamma=False),
                 ("gamma", "beta"), may_reject=True)
    out += _both("alias_running_var_is_running_mean_globalstats",
                 _alias("running_mean", "running_var", use_global_stats=True),
                 ("running_mean", "running_var"), may_reject=True)
    for momentum in (-0.5, 1.5, 2.0):
        out += _both(f"momentum_{_num_token(momentum)}", _call(momentum=momentum),
                     ("momentum",), ops=("step",))
    for tag, eps in (("zero", 0.0), ("negzero", -0.0), ("subnormal", 5e-324)):
        out += _both(f"eps_{tag}", _call(eps=eps), ("eps",))
    return out


def _num_token(v) -> str:
    text = repr(v).replace(".", "p")
    return text.replace("-", "neg")


INVALID: list[Scenario] = (_parameter_shapes() + _axes() + _ranks_and_empty() + _x_dtypes()
                           + _mixed_dtypes() + _scalars() + _overlaps())
UNUSUAL: list[Scenario] = _unusual()


def _check_unique(scenarios) -> None:
    seen = set()
    for s in scenarios:
        if s.id in seen:
            raise ValueError(f"scenario id={s.id!r} is used twice")
        seen.add(s.id)


_check_unique(INVALID + UNUSUAL)
