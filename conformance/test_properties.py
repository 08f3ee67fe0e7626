"""Property-based tier: random small problems against the oracle, and metamorphic relations.

Hypothesis draws shapes, axes, flags, dtypes, eps, momentum and data
(conformance/property_draws.py) and checks, in the suite's tolerance model:

- the backend agrees with ``oracle.evaluate`` computed on the fly (every output);
- permuting the samples permutes y and dx and changes no statistic;
- scaling the input by 2**k and shifting it (eps scaled by 4**k, all exact) leaves the
  training output y, dgamma and dbeta unchanged and scales dx by 2**-k;
- with fix_gamma, gamma (NaN and infinities included) changes nothing;
- with running statistics (use_global_stats or inference), each sample's y and dx depend on
  that sample only;
- in training with batch statistics, dx sums to zero over each channel, to within the sum
  of its elements' tolerances;
- channel-first and channel-last layouts of the same data agree.

Two outputs of the backend are compared with each other within twice the output's limit,
in units of the larger condition scale of the two exact answers (property_draws.agree).
Profiles (conformance/hypothesis_profiles.py): ``ci`` by default, ``nightly`` with
``--hypothesis-profile nightly``. A failing test saves its shrunk example, promotes it to
golden case files (conformance.promote) in the report's hypothesis/promoted/<test>/ and
prints their ids with the command that runs them.
"""
from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bnspec.formats import FORMATS
from conformance import hypothesis_profiles, plugin, profiles, reports
from conformance import property_draws as draws
from conformance.input_checks import call_backend
from conformance.messages import failure_message
from conformance.runner import generated_case
from conformance.tolerances import limit_for
from oracle.api import Expected

pytestmark = pytest.mark.bn_generated
OPS = ("forward", "step")
ACTIVE = hypothesis_profiles.active()


def prop(test):
    """Run test(tier, op, data) under the active profile, drawing with st.data()."""
    return settings(ACTIVE)(given(data=st.data())(test))


@dataclasses.dataclass(repr=False)
class Tier:
    """The backend under test and what a property test needs from the run."""

    backend: object
    spec: str
    profile: str  # tolerance profile
    variants: tuple
    examples: object  # directory for failing examples

    def __repr__(self) -> str:
        return f"Tier({self.backend.name}, {self.profile})"

    @property
    def caps(self):
        return self.backend.capabilities

    def require(self, op: str) -> None:
        if op == "step" and not self.caps.backward:
            pytest.skip(f"{self.backend.name}: it has no backward")
        if op == "forward" and not self.caps.forward:
            pytest.skip(f"{self.backend.name}: it has no forward")

    def require_batch_stats(self, op: str) -> None:
        """Skip a test whose every example is a training call with batch statistics where
        the backend cannot make such calls (an inference engine), with its reason."""
        probe = generated_case(op, "float32", {"training": True}, {}, shape=(2, 3),
                               case_id="hypothesis", family="probe",
                               summary="a training call with batch statistics")
        reason = self.backend.supports(probe)
        if reason is not None:
            pytest.skip(f"{self.backend.name}: {reason}")

    def run(self, problem: draws.Problem) -> dict:
        """Return the backend's outputs; skip the example if the backend refuses the case."""
        case = generated_case(problem.op, problem.dtype, {**problem.kwargs, "cudnn_off": False},
                              problem.arrays, case_id="hypothesis", family=problem.family,
                              summary="hypothesis example")
        assume(self.backend.supports(case) is None)
        outputs = call_backend(self.backend, problem.op, problem.call())
        assert isinstance(outputs, dict), f"returned a {type(outputs).__name__}, not a dict"
        return outputs

    def check(self, test: str, relation: str, problems: list, judged: list) -> None:
        """Fail with the suite's message and the promote command if a verdict failed."""
        __tracebackhide__ = True
        failing = [item for item in judged if not item[0].ok]
        if not failing:
            return
        promoted = self.promote(test, problems)
        p = problems[0]
        summary = (f"{p.dtype} {'x'.join(map(str, p.arrays['x'].shape))} {p.family} "
                   f"{p.op} {p.kwargs}")
        pytest.fail(failure_message(relation, self.backend.name, summary, failing,
                                    promoted).replace("repro: ", "promoted: ", 1))

    def promote(self, test: str, problems: list) -> str:
        """Return the lines that show a failing example as golden cases: the example is
        saved (<report dir>/<backend>/hypothesis/<test>.npz), promoted to case files in
        hypothesis/promoted/<test>/ (conformance.promote; replacing the previous shrink step's), and the command that runs them
        is given; where promoting fails, the command that would promote it."""
        from conformance.promote import promote, save_example

        path = save_example(self.examples / f"{test}.npz", test,
                            [(p.op, p.arrays, p.kwargs) for p in problems])
        out = self.examples / "promoted" / test
        shutil.rmtree(out, ignore_errors=True)  # the previous (less shrunk) example's cases
        try:
            written = promote(path, out)
        except (OSError, ValueError, KeyError) as exc:
            return (f"python -m conformance.promote {path} --out cases_promoted/  "
                    f"(promoting it here failed: {exc})")
        ids = " or ".join(w.stem for w in written)
        return (f"golden case(s) {', '.join(w.stem for w in written)} in {out}\n"
                f"repro: pytest conformance/ --backend {self.spec} --cases {out} -k '{ids}'")


@pytest.fixture(scope="module")
def tier(request) -> Tier:
    state = plugin._state(request.config)
    backend = state.backend
    examples = reports.backend_dir(state.report_dir, backend.name) / "hypothesis"
    return Tier(backend, state.resolved.spec, state.profile, profiles.declared(backend),
                examples)


def with_arrays(e: Expected, fn) -> Expected:
    """Return e with fn applied to each of its arrays."""
    return Expected(e.name, e.dtype, fn(e.hi), fn(e.lo), fn(e.rounded), fn(e.cond))


@pytest.mark.parametrize("op", OPS)
@prop
def test_matches_oracle(tier, op, data):
    tier.require(op)
    p = data.draw(draws.problems(tier.caps, op), label="problem")
    want = draws.expected(p, tier.variants)
    judged = draws.judge(p, tier.run(p), want, tier.profile)
    tier.check(f"test_matches_oracle_{op}", "oracle.evaluate on the fly", [p], judged)


@pytest.mark.parametrize("op", OPS)
@prop
def test_batch_permutation(tier, op, data):
    tier.require(op)
    p = data.draw(draws.problems(tier.caps, op), label="problem")
    b = p.batch_axis
    perm = np.array(data.draw(st.permutations(range(p.arrays["x"].shape[b])), label="perm"))
    q = p.replace({k: np.take(p.arrays[k], perm, axis=b) for k in ("x", "dy") if k in p.arrays})
    want, got_p, got_q = draws.expected(p, tier.variants), tier.run(p), tier.run(q)
    back = np.argsort(perm)
    judged = []
    for name, e in want.items():
        g = got_q.get(name)
        if name in ("y", "dx") and g is not None:
            g = np.take(g, back, axis=b)
        judged.append(draws.agree(name, got_p.get(name), g, e, e, p.dtype, tier.profile))
    tier.check(f"test_batch_permutation_{op}",
               f"samples permuted along axis {b} by {perm.tolist()}", [p, q], judged)


@pytest.mark.parametrize("op", OPS)
@prop
def test_scale_and_shift(tier, op, data):
    tier.require(op)
    tier.require_batch_stats(op)
    p = data.draw(draws.problems(tier.caps, op, families=("integers",), training=True,
                                 use_global_stats=False), label="problem")
    k = data.draw(st.integers(-2, 3), label="k")
    shift = data.draw(st.integers(-16, 16), label="shift")
    fmt = FORMATS[p.dtype]
    x64 = np.ldexp(p.arrays["x"].astype(np.float64), k) + shift
    eps = math.ldexp(p.kwargs["eps"], 2 * k)
    exact_eps = draws.to_dtype(eps, p.dtype).astype(float) == math.ldexp(
        float(draws.to_dtype(p.kwargs["eps"], p.dtype)), 2 * k)
    assume(np.array_equal(draws.to_dtype(x64, p.dtype).astype(float), x64) and exact_eps
           and np.all(np.abs(x64) < fmt.max_finite / 4))
    q = p.replace({"x": draws.to_dtype(x64, p.dtype)}, eps=eps)
    want_p, want_q = draws.expected(p, tier.variants), draws.expected(q, tier.variants)
    got_p, got_q = tier.run(p), tier.run(q)
    judged = []
    for name, scale in (("y", 0), ("invstd", k), ("dx", k), ("dgamma", 0), ("dbeta", 0)):
        if name not in want_p:
            continue
        g = got_q.get(name)
        if g is not None and scale:
            g64 = np.ldexp(np.asarray(g, np.float64), scale)
            assume(np.array_equal(draws.to_dtype(g64, want_p[name].dtype).astype(float), g64))
            g = draws.to_dtype(g64, want_p[name].dtype)
        wq = with_arrays(want_q[name], lambda a, s=scale: np.ldexp(a, s))
        judged.append(draws.agree(name, got_p.get(name), g, want_p[name], wq, p.dtype,
                                  tier.profile))
    tier.check(f"test_scale_and_shift_{op}", f"x scaled by 2**{k} and shifted by {shift}, "
               f"eps by 4**{k}", [p, q], judged)


@pytest.mark.parametrize("op", OPS)
@prop
def test_fix_gamma_ignores_gamma(tier, op, data):
    tier.require(op)
    p = data.draw(draws.problems(tier.caps, op, fix_gamma=True), label="problem")
    c = p.arrays["gamma"].size
    other = data.draw(st.lists(st.sampled_from([0.0, -1.0, 1e30, math.nan, math.inf])
                               | st.floats(-5, 5, width=32), min_size=c, max_size=c))
    q = p.replace({"gamma": draws.to_dtype(other, p.arrays["gamma"].dtype.name)})
    want, got_p, got_q = draws.expected(p, tier.variants), tier.run(p), tier.run(q)
    judged = [draws.agree(name, got_p.get(name), got_q.get(name), e, e, p.dtype, tier.profile)
              for name, e in want.items()]
    tier.check(f"test_fix_gamma_ignores_gamma_{op}", "fix_gamma with another gamma", [p, q],
               judged)


@pytest.mark.parametrize("op", OPS)
@prop
def test_running_stats_make_samples_independent(tier, op, data):
    tier.require(op)
    training, global_stats = data.draw(st.sampled_from([(True, True), (False, False),
                                                        (False, True)]), label="mode")
    p = data.draw(draws.problems(tier.caps, op, training=training,
                                 use_global_stats=global_stats), label="problem")
    b, x = p.batch_axis, p.arrays["x"]
    others = {}
    for name in ("x", "dy"):
        if name in p.arrays:
            fresh = draws.to_dtype(data.draw(draws.family_values("normal", x.size)), p.dtype)
            fresh = fresh.reshape(x.shape)
            index = [slice(None)] * x.ndim
            index[b] = 0
            fresh[tuple(index)] = p.arrays[name][tuple(index)]
            others[name] = fresh
    q = p.replace(others)
    want, got_p, got_q = draws.expected(p, tier.variants), tier.run(p), tier.run(q)
    judged = []
    for name, e in want.items():
        if name in ("dgamma", "dbeta"):
            continue  # sums over every sample
        first = (lambda a: np.take(a, [0], axis=b)) if name in ("y", "dx") else (lambda a: a)
        gp, gq = got_p.get(name), got_q.get(name)
        judged.append(draws.agree(name, None if gp is None else first(gp),
                                  None if gq is None else first(gq), with_arrays(e, first),
                                  with_arrays(e, first), p.dtype, tier.profile))
    tier.check(f"test_running_stats_make_samples_independent_{op}",
               f"every sample but the first replaced (axis {b})", [p, q], judged)


@prop
def test_dx_sums_to_zero(tier, data):
    tier.require("step")
    tier.require_batch_stats("step")
    finite = tuple(f for f in draws.FAMILIES if f != "special")
    p = data.draw(draws.problems(tier.caps, "step", families=finite, training=True,
                                 use_global_stats=False), label="problem")
    want = draws.expected(p, tier.variants)["dx"]
    dx = tier.run(p).get("dx")
    assert dx is not None, "the backend returned no dx"
    fmt = FORMATS[p.dtype]
    limit = limit_for(tier.profile, "dx", p.dtype).units
    c = p.channel_axis
    got = np.moveaxis(np.asarray(dx, np.float64), c, -1).reshape(-1, dx.shape[c])
    cond = np.moveaxis(want.cond, c, -1).reshape(-1, dx.shape[c])
    for ch in range(got.shape[1]):
        assume(np.all(np.isfinite(cond[:, ch])))
        total = math.fsum(got[:, ch])
        bound = limit * fmt.unit_roundoff * math.fsum(cond[:, ch] + math.ldexp(1.0, fmt.emin))
        if not abs(total) <= bound:
            pytest.fail(f"sum(dx[channel {ch}])={total!r}, but should be 0 within {bound:.3g} "
                        f"(the sum of its elements' tolerances) [{tier.backend.name}]\n"
                        f"promoted: {tier.promote('test_dx_sums_to_zero', [p])}")


@pytest.mark.parametrize("op", OPS)
@prop
def test_layouts_agree(tier, op, data):
    tier.require(op)
    if tier.caps.max_rank is not None and tier.caps.max_rank < 3:
        pytest.skip(f"{tier.backend.name}: ranks up to {tier.caps.max_rank}; layouts need 3")
    p = data.draw(draws.problems(tier.caps, op, min_rank=3, axis=1), label="problem")
    q = p.replace({k: np.ascontiguousarray(np.moveaxis(p.arrays[k], 1, -1))
                   for k in ("x", "dy") if k in p.arrays}, axis=-1)
    want, got_p, got_q = draws.expected(p, tier.variants), tier.run(p), tier.run(q)
    judged = []
    for name, e in want.items():
        g = got_q.get(name)
        if name in ("y", "dx") and g is not None:
            g = np.ascontiguousarray(np.moveaxis(g, -1, 1))
        judged.append(draws.agree(name, got_p.get(name), g, e, e, p.dtype, tier.profile))
    tier.check(f"test_layouts_agree_{op}", "channel-first (axis 1) vs channel-last (axis -1)",
               [p, q], judged)
