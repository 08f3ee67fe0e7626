"""Forward outputs (y; mean and invstd with output_mean_var) of every forward case."""
import pytest

from conformance.checks import FORWARD_CHECKED


@pytest.mark.bn_cases("fwd")
def test_forward(case_id, conformance):
    case = conformance.case(case_id)
    conformance.check_outputs(case, FORWARD_CHECKED)
