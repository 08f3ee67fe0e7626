"""running_mean / running_var as returned after a forward call (fwd cases: MXNet leaves
them unchanged, so they must come back bit-identical) and after a training step (bwd
cases: updated with momentum and the biased batch variance when training with batch stats)."""
import pytest

from conformance.checks import RUNNING_CHECKED


@pytest.mark.bn_cases("fwd", "bwd")
def test_running_stats(case_id, conformance):
    case = conformance.case(case_id)
    conformance.check_outputs(case, RUNNING_CHECKED)
